/** `fer evaluate`: metrics and figures of a trained run on a dataset split. */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Command, Option } from 'commander';

import { initBackend, type BackendPreference } from '../backend';
import { CANONICAL_CLASSES, ClassAliases } from '../classes';
import { discoverDataset, type SplitName } from '../data/dataset';
import { filesSharedWith, findDuplicates } from '../data/duplicates';
import { ImageStore } from '../data/store';
import { writeEvaluation } from '../eval/evaluate';
import { predictStoreFast } from '../eval/fast';
import { resolveDataDir } from '../paths';
import {
  comparisonTable,
  FACEAPI_EXPRESSION_INPUT_SIZE,
  FACEAPI_EXPRESSION_MODEL,
  predictStoreFaceApi,
  type ComparisonRow,
} from '../predict/faceapi_expressions';
import { stratifiedSubset } from '../train/data';
import { loadRun, type LoadedRun } from '../train/load_run';
import { log } from '../util/log';
import { collect, parseAliases, parsePositiveInteger } from './parse';

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
  faceapi?: boolean;
  duplicates: boolean;
}


export function registerEvaluateCommand(program: Command): void {
  program
    .command('evaluate')
    .description(
      'Evaluate a trained run on a dataset split without augmentation: accuracy, per-class precision/recall/F1, ' +
        'macro and weighted averages, log loss, confusion matrix and one-vs-rest ROC/AUC, written as JSON, CSV, text and PNG.',
    )
    .argument('[run-dir]', 'run folder written by "fer train" (optional with --faceapi)')
    .option('-d, --data <dir>', "dataset folder (default: the run's dataset, or FER_DATA / data/fer2013 without a run)")
    .addOption(new Option('--split <name>', 'split to evaluate').choices(['train', 'validation', 'test']).default('test'))
    .option('-o, --out <dir>', 'output folder (default: <run-dir>/evaluation/<split>, or evaluation/faceapi/<split> with --faceapi and no run)')
    .option('--figures-dir <dir>', 'folder for the PNG figures, e.g. images/<model> (default: the output folder)')
    .option('--no-figures', 'skip PNG figures (they need Chromium)')
    .option('--limit <n>', 'evaluate at most n images, drawn per class in proportion (seeded)', parsePositiveInteger)
    .option('--batch-size <n>', 'images per inference batch', parsePositiveInteger, 64)
    .option('--class-alias <folder=class>', 'map a folder name to a class, e.g. contempt=disgust (repeatable)', collect)
    .addOption(new Option('--backend <name>', 'TensorFlow.js backend (default: auto)').choices(['auto', 'node-gpu', 'node', 'wasm', 'cpu']))
    .option('-q, --quiet', 'no progress bars')
    .option('--no-duplicates', 'skip hashing the other splits; by default metrics are also reported without images that occur in them')
    .option(
      '--faceapi',
      "also score face-api's expression model (FaceExpressionNet, shipped in @vladmandic/face-api) on the same images, each image taken " +
        'as a face crop resized to 112x112; its files go to <output folder>/faceapi, or to the output folder without a run. ' +
        'With a run, prints both models in one table',
    )
    .action(async (runDir: string | undefined, opts: EvaluateCliOptions) => {
      if (runDir === undefined && opts.faceapi !== true) {
        throw Object.assign(new Error('missing run folder: pass <run-dir>, or --faceapi to score only face-api\'s expression model.'), { exitCode: 2 });
      }
      await initBackend(opts.backend);
      const run: LoadedRun | undefined = runDir !== undefined ? await loadRun(runDir) : undefined;
      const dataDir = opts.data !== undefined || run === undefined ? resolveDataDir(opts.data) : run.options.dataDir;
      const aliases = { ...run?.options.classAliases, ...parseAliases(opts.classAlias) };
      const dataset = discoverDataset(dataDir, { aliases: new ClassAliases(aliases) });
      const records = dataset.splits[opts.split];
      if (records === undefined) {
        const available = Object.keys(dataset.splits).join(', ');
        throw new Error(`Dataset ${dataDir} has no ${opts.split} split (found: ${available}). Choose one with --split.`);
      }
      if (opts.split !== 'test' && run !== undefined && run.options.dataDir === dataDir) {
        log.warn(`evaluating on the ${opts.split} split, which this run used during training; these are not test scores.`);
      }
      // Without a run, seed 0 draws the --limit subset; with one, the run's seed does, as before.
      const selected = stratifiedSubset(records, opts.limit, run?.options.seed ?? 0, 3);
      const rows: ComparisonRow[] = [];
      const out = path.resolve(
        opts.out ?? (run !== undefined ? path.join(run.runDir, 'evaluation', opts.split) : path.join('evaluation', 'faceapi', opts.split)),
      );
      if (run === undefined) {
        await evaluateFaceApi(selected, opts, dataDir, out, rows);
        return;
      }
      const trainedTestLimit = run.options.limits?.test;
      if (opts.split === 'test' && opts.limit === undefined && trainedTestLimit !== undefined && trainedTestLimit < records.length) {
        log.info(
          `the run's own test evaluation used ${trainedTestLimit} of the ${records.length} test images (--limit-test); ` +
            `this one uses all of them. Add --limit ${trainedTestLimit} to repeat the run's evaluation.`,
        );
      }
      if (opts.out === undefined && fs.existsSync(path.join(out, 'metrics.json'))) {
        log.warn(`${out} already contains an evaluation, which this one replaces. Pass --out DIR to keep it.`);
      }
      const store = await ImageStore.load(selected, {
        size: run.fer.inputSize,
        fit: run.options.resizeFit,
        label: opts.split,
        silent: opts.quiet ?? false,
      });
      const predictions = await predictStoreFast(run.fer.model, store, {
        batchSize: opts.batchSize,
        preprocessing: run.fer.backbone.preprocessing,
        label: opts.split,
        silent: opts.quiet ?? false,
      });
      const others = (Object.keys(dataset.splits) as SplitName[]).filter((s) => s !== opts.split);
      const leakedFiles =
        opts.duplicates && others.length > 0
          ? filesSharedWith(await findDuplicates(dataset.splits, { silent: opts.quiet ?? false }), opts.split, others)
          : undefined;
      const report = await writeEvaluation(predictions, run.fer.classNames, {
        dir: out,
        ...(opts.figuresDir !== undefined ? { figuresDir: path.resolve(opts.figuresDir) } : {}),
        title: `${run.options.configuration.name} on ${path.basename(dataDir)} ${opts.split}`,
        figures: opts.figures,
        extra: { split: opts.split, dataDir, runDir: run.runDir, skipped: store.skipped },
        ...(leakedFiles !== undefined ? { leakedFiles } : {}),
      });
      const leakedCount = leakedFiles === undefined ? 0 : predictions.paths.filter((p) => leakedFiles.has(p)).length;
      if (leakedCount > 0) {
        log.warn(
          `${leakedCount} of the ${predictions.paths.length} ${opts.split} images also occur in ${others.join(' or ')}; ` +
            'metrics without them are in metrics.json ("withoutDuplicates") and report.txt.',
        );
      }
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
      rows.push({ model: run.options.configuration.name, images: report.numSamples, accuracy: report.accuracy, macroF1: report.macro.f1 });
      if (opts.faceapi === true) {
        await evaluateFaceApi(selected, opts, dataDir, path.join(out, 'faceapi'), rows);
        log.info(`comparison on ${path.basename(dataDir)} ${opts.split}:\n${comparisonTable(rows)}`);
      }
    });
}

/** Scores face-api's FaceExpressionNet on the selected images and writes the same evaluation files as for a run. */
async function evaluateFaceApi(
  selected: Parameters<typeof ImageStore.load>[0],
  opts: EvaluateCliOptions,
  dataDir: string,
  out: string,
  rows: ComparisonRow[],
): Promise<void> {
  const store = await ImageStore.load(selected, {
    size: FACEAPI_EXPRESSION_INPUT_SIZE,
    fit: 'fill',
    label: `${opts.split} (face-api)`,
    silent: opts.quiet ?? false,
  });
  const start = performance.now();
  const predictions = await predictStoreFaceApi(store, { batchSize: opts.batchSize, label: opts.split, silent: opts.quiet ?? false });
  const seconds = (performance.now() - start) / 1000;
  const report = await writeEvaluation(predictions, CANONICAL_CLASSES, {
    dir: out,
    ...(opts.figuresDir !== undefined ? { figuresDir: path.join(path.resolve(opts.figuresDir), 'faceapi') } : {}),
    title: `${FACEAPI_EXPRESSION_MODEL} on ${path.basename(dataDir)} ${opts.split}`,
    figures: opts.figures,
    extra: { model: FACEAPI_EXPRESSION_MODEL, split: opts.split, dataDir, skipped: store.skipped, inferenceSeconds: seconds },
  });
  log.info(
    `face-api ${opts.split}: accuracy ${report.accuracy.toFixed(4)}, macro-F1 ${report.macro.f1.toFixed(4)}, ` +
      `macro AUC ${report.macroAuc.toFixed(4)} on ${report.numSamples} images (inference ${seconds.toFixed(1)} s). Files: ${out}`,
  );
  process.stdout.write(
    JSON.stringify({
      model: 'faceapi-expression',
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
      inferenceSeconds: seconds,
      out,
    }) + '\n',
  );
  rows.push({ model: FACEAPI_EXPRESSION_MODEL, images: report.numSamples, accuracy: report.accuracy, macroF1: report.macro.f1 });
}
