/** `fer models`: the registered configurations and backbones. */
import { Command } from 'commander';

import { registerBuiltins } from '../models/catalog';
import { listBackbones, listConfigurations } from '../models/registry';

export function registerModelsCommand(program: Command): void {
  program
    .command('models')
    .description('List the registered model configurations (for --model) and backbones, with their defaults.')
    .option('--json', 'print JSON instead of a table')
    .action((opts: { json?: boolean }) => {
      registerBuiltins();
      const configurations = listConfigurations();
      const backbones = listBackbones();
      if (opts.json) {
        process.stdout.write(
          JSON.stringify(
            {
              configurations,
              backbones: backbones.map((b) => ({
                name: b.name,
                description: b.description,
                defaultInputSize: b.defaultInputSize,
                preprocessing: b.preprocessing,
                lastConvLayer: b.lastConvLayer,
                blocks: b.blocks,
                weights: b.weights,
              })),
            },
            null,
            1,
          ) + '\n',
        );
        return;
      }
      const rows = configurations.map((c) => [
        c.name,
        c.backbone,
        `[${c.dense.join(', ')}]`,
        String(c.inputSize),
        String(c.batchSize),
        `${c.phase1.epochs} @ ${c.phase1.learningRate}`,
        `${c.phase2.epochs} @ ${c.phase2.learningRate}, ${c.phase2.unfreezeBlocks === 'all' ? 'all' : c.phase2.unfreezeBlocks} blocks`,
      ]);
      const header = ['configuration', 'backbone', 'dense', 'input', 'batch', 'phase 1 epochs @ lr', 'phase 2 epochs @ lr'];
      const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
      const format = (cells: string[]) => cells.map((cell, i) => cell.padEnd(widths[i] as number)).join('  ');
      process.stdout.write(`${format(header)}\n${rows.map(format).join('\n')}\n\n`);
      process.stdout.write('backbones:\n');
      for (const b of backbones) {
        const weights = b.weights.tfjsFolder !== undefined ? `tfjs folder ${b.weights.tfjsFolder}` : 'no offline weights';
        process.stdout.write(`  ${b.name.padEnd(20)} ${b.preprocessing.padEnd(6)} last conv ${b.lastConvLayer.padEnd(18)} ${weights}\n`);
      }
    });
}
