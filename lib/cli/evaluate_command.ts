/** `fer evaluate`: metrics and figures of a trained run on a dataset split. */
import * as path from 'node:path';

import { Command, Option } from 'commander';

import { initBackend, type BackendPreference } from '../backend';
import { ClassAliases } from '../classes';
import { discoverDataset, type SplitName } from '../data/dataset';
import { ImageStore } from '../data/store';
import { predictStore, writeEvaluation } from '../eval/evaluate';
import { resolveDataDir } from '../paths';
import { stratifiedSubset } from '../train/data';
import { loadRun } from '../train/load_run';
import { log } from '../util/log';
import { collect, parseAliases, parseInteger } from './parse';

interface EvaluateCliOptions {
  data?: string;
  split: SplitName;
  out?: string;
  figuresDir?: string;
  figures: boolean;
  limit?: number;
  batchSize: number;
  classAlias?: string[];
  backend?: BackendPreference;
  quiet?: boolean;
}

export function registerEvaluateCommand(program: Command): void {
  program
    .command('evaluate')
    .description(
      'Evaluate a trained run on a dataset split without augmentation: accuracy, per-class precision/recall/F1, ' +
        'macro and weighted averages, log loss, confusion matrix and one-vs-rest ROC/AUC, written as JSON, CSV, text and PNG.',
    )
    .argument('<run-dir>', 'run folder written by "fer train"')
    .option('-d, --data <dir>', "dataset folder (default: the run's dataset)")
    .addOption(new Option('--split <name>', 'split to evaluate').choices(['train', 'validation', 'test']).default('test'))
    .option('-o, --out <dir>', 'output folder (default: <run-dir>/evaluation/<split>)')
    .option('--figures-dir <dir>', 'folder for the PNG figures, e.g. images/<model> (default: the output folder)')
    .option('--no-figures', 'skip PNG figures (they need Chromium)')
    .option('--limit <n>', 'evaluate at most n images, drawn per class in proportion (seeded)', parseInteger)
    .option('--batch-size <n>', 'images per inference batch', parseInteger, 64)
    .option('--class-alias <folder=class>', 'map a folder name to a class, e.g. contempt=disgust (repeatable)', collect)
    .addOption(new Option('--backend <name>', 'TensorFlow.js backend (default: auto)').choices(['auto', 'node-gpu', 'node', 'wasm', 'cpu']))
    .option('-q, --quiet', 'no progress bars')
    .action(async (runDir: string, opts: EvaluateCliOptions) => {
      await initBackend(opts.backend);
      const run = await loadRun(runDir);
      const dataDir = opts.data !== undefined ? resolveDataDir(opts.data) : run.options.dataDir;
      const aliases = { ...run.options.classAliases, ...parseAliases(opts.classAlias) };
      const dataset = discoverDataset(dataDir, { aliases: new ClassAliases(aliases) });
      const records = dataset.splits[opts.split];
      if (records === undefined) {
        const available = Object.keys(dataset.splits).join(', ');
        throw new Error(`Dataset ${dataDir} has no ${opts.split} split (found: ${available}). Choose one with --split.`);
      }
      if (opts.split !== 'test' && run.options.dataDir === dataDir) {
        log.warn(`evaluating on the ${opts.split} split, which this run used during training; these are not test scores.`);
      }
      const selected = stratifiedSubset(records, opts.limit, run.options.seed, 3);
      const store = await ImageStore.load(selected, {
        size: run.fer.inputSize,
        fit: run.options.resizeFit,
        label: opts.split,
        silent: opts.quiet ?? false,
      });
      const predictions = await predictStore(run.fer.model, store, {
        batchSize: opts.batchSize,
        preprocessing: run.fer.backbone.preprocessing,
        label: opts.split,
        silent: opts.quiet ?? false,
      });
      const out = path.resolve(opts.out ?? path.join(run.runDir, 'evaluation', opts.split));
      const report = await writeEvaluation(predictions, run.fer.classNames, {
        dir: out,
        ...(opts.figuresDir !== undefined ? { figuresDir: path.resolve(opts.figuresDir) } : {}),
        title: `${run.options.configuration.name} on ${path.basename(dataDir)} ${opts.split}`,
        figures: opts.figures,
        extra: { split: opts.split, dataDir, runDir: run.runDir, skipped: store.skipped },
      });
      const absent = report.absentClasses.length > 0 ? `; absent classes: ${report.absentClasses.join(', ')} (averages cover the others)` : '';
      log.info(
        `${opts.split}: accuracy ${report.accuracy.toFixed(4)}, macro-F1 ${report.macro.f1.toFixed(4)}, ` +
          `macro AUC ${report.macroAuc.toFixed(4)}, log loss ${report.logLoss.toFixed(4)} on ${report.numSamples} images${absent}. Files: ${out}`,
      );
      process.stdout.write(
        JSON.stringify({
          split: opts.split,
          images: report.numSamples,
          skipped: store.skipped.length,
          accuracy: report.accuracy,
          macroPrecision: report.macro.precision,
          macroRecall: report.macro.recall,
          macroF1: report.macro.f1,
          macroAuc: report.macroAuc,
          logLoss: report.logLoss,
          absentClasses: report.absentClasses,
          out,
        }) + '\n',
      );
    });
}
