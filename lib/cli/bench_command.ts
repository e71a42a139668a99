/** `fer bench`: training and inference speed of the toolkit against the equivalent Keras program. */
import * as path from 'node:path';

import { Command, InvalidArgumentError, Option } from 'commander';

import { resolveRunsDir } from '../paths';
import { formatReport, parseBenchModels, runBench } from '../perf/bench';
import { log } from '../util/log';
import { parseInteger, parseNumber } from './parse';

/** Backbones of the benchmark: the main job's MobileNet-0.25 at 96 pixels and four families at the reduced scale's 64. */
export const DEFAULT_BENCH_MODELS = 'MobileNet-0.25@96,MobileNetV2,EfficientNetB0,ResNet50V2,ConvNeXtTiny';

interface BenchCliOptions {
  models: string;
  inputSize: number;
  batchSize: number;
  repeats: number;
  trainImages: number;
  validationImages: number;
  epochs: number;
  unfreeze: string;
  augment: boolean;
  keras: boolean;
  python: string;
  data?: string;
  seed: number;
  inferenceRuns: number;
  out?: string;
  peakGflops?: number;
  timeout: number;
}

function positive(name: string): (value: string) => number {
  return (value) => {
    const n = parseInteger(value);
    if (n <= 0) {
      throw new InvalidArgumentError(`${name} must be a positive integer, got ${value}.`);
    }
    return n;
  };
}

export function registerBenchCommand(program: Command): void {
  program
    .command('bench')
    .description(
      'Benchmark training and inference against the equivalent Keras 3 program (scripts/bench_keras.py) on the same CPU, ' +
        'data and batch size: alternating runs in fresh processes, ratios with min, median and max over the repeats.',
    )
    .option('-m, --models <list>', 'comma-separated backbones, each optionally with @SIZE (input pixels)', DEFAULT_BENCH_MODELS)
    .option('--input-size <px>', 'input size of the backbones listed without @SIZE, in pixels', positive('input size'), 64)
    .option('--batch-size <n>', 'batch size of training and of the batched inference measurement', positive('batch size'), 32)
    .option('--repeats <n>', 'runs of each framework per backbone', positive('repeats'), 3)
    .option('--train-images <n>', 'training images per epoch (a seeded stratified subset of the training split)', positive('training images'), 320)
    .option('--validation-images <n>', 'validation images the toolkit evaluates after each epoch (not timed)', positive('validation images'), 64)
    .option('--epochs <n>', 'epochs per phase; the first of each phase is warm-up and reported apart', positive('epochs'), 3)
    .option('--unfreeze <n|all>', "backbone blocks trained in phase 2, counted from the top, or 'all'", 'all')
    .option('--no-augment', 'train without augmentation (the toolkit then trains phase 1 on cached features)')
    .option('--no-keras', 'run only the toolkit')
    .option('--python <path>', 'Python interpreter with tensorflow-cpu and keras', process.env.FER_PYTHON ?? path.join('.venv', 'bin', 'python'))
    .option('--data <dir>', 'dataset folder (default data/fer2013 or FER_DATA)')
    .option('--seed <n>', 'seed of the data subset, shuffling and initial weights', parseInteger, 42)
    .option('--inference-runs <n>', 'timed batch-1 calls per runtime (batch 32 gets a fifth as many, at least 3)', positive('inference runs'), 30)
    .option('--out <dir>', 'folder for results.json and results.md (default runs/bench-<time>)')
    .addOption(new Option('--peak-gflops <n>', 'peak float32 GFLOP/s of the CPU for the percentages (default: computed from /proc/cpuinfo)').argParser(parseNumber))
    .option('--timeout <minutes>', 'time limit of one child run, in minutes', positive('timeout'), 30)
    .action(async (opts: BenchCliOptions) => {
      const unfreeze = opts.unfreeze === 'all' ? 'all' : Number(opts.unfreeze);
      if (unfreeze !== 'all' && !(Number.isInteger(unfreeze) && unfreeze >= 0)) {
        throw new InvalidArgumentError(`Invalid --unfreeze "${opts.unfreeze}": expected an integer >= 0 or 'all'.`);
      }
      if (opts.epochs < 2) {
        throw new InvalidArgumentError(`--epochs must be at least 2 (the first epoch of each phase is warm-up), got ${opts.epochs}.`);
      }
      const stamp = new Date().toISOString().replace(/[:.]/g, '-').replace(/-\d\d\dZ$/, 'Z');
      const outDir = path.resolve(opts.out ?? path.join(resolveRunsDir(), `bench-${stamp}`));
      const report = await runBench(
        {
          models: parseBenchModels(opts.models, opts.inputSize),
          batchSize: opts.batchSize,
          repeats: opts.repeats,
          trainImages: opts.trainImages,
          validationImages: opts.validationImages,
          epochs: opts.epochs,
          unfreeze,
          augment: opts.augment,
          keras: opts.keras,
          python: opts.python,
          ...(opts.data !== undefined ? { dataDir: opts.data } : {}),
          seed: opts.seed,
          inferenceRuns: opts.inferenceRuns,
          outDir,
          ...(opts.peakGflops !== undefined ? { peakGflops: opts.peakGflops } : {}),
          timeoutMinutes: opts.timeout,
        },
        ['fer', ...process.argv.slice(2)].join(' '),
      );
      process.stdout.write(formatReport(report) + '\n');
      log.info(`bench: results in ${outDir} (results.json, results.md).`);
      const failed = report.runs.filter((r) => r.error !== undefined).length;
      if (failed > 0) {
        // The report is written either way. A non-zero exit status marks it as incomplete for scripts.
        throw new Error(`${failed} of ${report.runs.length} benchmark runs failed; their reasons are under "Failed runs" in ${path.join(outDir, 'results.md')}.`);
      }
    });
}
