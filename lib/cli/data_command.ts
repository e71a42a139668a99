/** `fer data`: what a dataset folder holds, before any training. */
import { Command } from 'commander';

import { CANONICAL_CLASSES, ClassAliases } from '../classes';
import { classCounts, discoverDataset, type ImageRecord, type SplitName } from '../data/dataset';
import { countCrossSplitPairs, findDuplicates } from '../data/duplicates';
import { resolveDataDir } from '../paths';
import { collect, parseAliases } from './parse';

export function registerDataCommand(program: Command): void {
  program
    .command('data')
    .description('Summarise a dataset folder: layout, class folders, images per split and class, and identical files shared between splits.')
    .option('-d, --data <dir>', 'dataset folder (default: $FER_DATA or data/fer2013)')
    .option('--class-alias <folder=class>', 'map a folder name to a class, e.g. contempt=disgust (repeatable)', collect)
    .option('--no-duplicates', 'skip hashing files')
    .option('--json', 'print JSON')
    .action(async (opts: { data?: string; classAlias?: string[]; duplicates: boolean; json?: boolean }) => {
      const dataset = discoverDataset(resolveDataDir(opts.data), { aliases: new ClassAliases(parseAliases(opts.classAlias)) });
      const splits = dataset.splits as Partial<Record<SplitName, ImageRecord[]>>;
      const duplicates = opts.duplicates ? await findDuplicates(splits, { silent: opts.json ?? false }) : undefined;
      const summary = {
        root: dataset.root,
        layout: dataset.layout,
        classFolders: dataset.classFolders,
        counts: Object.fromEntries(
          Object.entries(splits).map(([split, records]) => [
            split,
            Object.fromEntries(classCounts(records ?? []).map((n, i) => [CANONICAL_CLASSES[i], n])),
          ]),
        ),
        skipped: dataset.skipped,
        duplicates:
          duplicates === undefined
            ? null
            : { crossSplitGroups: duplicates.crossSplit.length, pairs: countCrossSplitPairs(duplicates), conflictingLabels: duplicates.conflictingLabels },
      };
      if (opts.json) {
        process.stdout.write(JSON.stringify(summary, null, 1) + '\n');
        return;
      }
      const lines = [`${summary.root} (${summary.layout === 'splits' ? 'split folders' : 'one folder of classes'})`];
      lines.push(`class folders: ${Object.entries(summary.classFolders).map(([f, c]) => (f === c ? f : `${f} -> ${c}`)).join(', ')}`);
      const splitNames = Object.keys(summary.counts);
      lines.push(['class'.padEnd(10), ...splitNames.map((s) => s.padStart(11))].join(''));
      for (const cls of CANONICAL_CLASSES) {
        lines.push([cls.padEnd(10), ...splitNames.map((s) => String(summary.counts[s]?.[cls] ?? 0).padStart(11))].join(''));
      }
      lines.push(['total'.padEnd(10), ...splitNames.map((s) => String(splits[s as SplitName]?.length ?? 0).padStart(11))].join(''));
      if (summary.skipped.length > 0) {
        lines.push(`skipped during discovery: ${summary.skipped.length} files (first: ${summary.skipped[0]?.path}: ${summary.skipped[0]?.reason})`);
      }
      if (summary.duplicates !== null) {
        const pairs = Object.entries(summary.duplicates.pairs).map(([p, n]) => `${p} ${n}`).join(', ');
        lines.push(
          summary.duplicates.crossSplitGroups === 0
            ? 'identical files shared between splits: none'
            : `identical files shared between splits: ${summary.duplicates.crossSplitGroups} groups (${pairs}), ${summary.duplicates.conflictingLabels} with conflicting labels`,
        );
      }
      process.stdout.write(lines.join('\n') + '\n');
    });
}
