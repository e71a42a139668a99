/**
 * `fer bench`: the toolkit against the equivalent Keras 3 program on the
 * same CPU, model, data and batch size, in one invocation. For every repeat
 * and backbone, one toolkit run (lib/perf/worker.ts) and one Keras run
 * (scripts/bench_keras.py) execute one after the other in fresh processes,
 * in alternating order, so that drift of a shared machine hits both sides
 * alike. Ratios are formed per repeat and summarised by min, median and max.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { initBackend } from '../backend';
import { resolveDataDir } from '../paths';
import { registerBuiltins } from '../models/catalog';
import { createModel, resolveConfiguration, setTrainableBlocks } from '../models/factory';
import { getConfiguration, hasBackbone, hasConfiguration, listBackbones } from '../models/registry';
import { prepareSplits } from '../train/data';
import { log } from '../util/log';
import { modelFlops } from './flops';
import { machineInfo, measureMatMulGflops, type MachineInfo } from './machine';
import type { RunConfig, RunResult } from './types';
import { median } from './worker';

export interface BenchModel {
  backbone: string;
  inputSize: number;
}

export interface BenchOptions {
  models: BenchModel[];
  batchSize: number;
  repeats: number;
  trainImages: number;
  validationImages: number;
  epochs: number;
  unfreeze: number | 'all';
  augment: boolean;
  keras: boolean;
  python: string;
  dataDir?: string;
  seed: number;
  inferenceRuns: number;
  outDir: string;
  /** Overrides the nominal peak computed from /proc/cpuinfo, in GFLOP/s. */
  peakGflops?: number;
  /** Limit of one child run, in minutes. */
  timeoutMinutes: number;
}

/** Parses "Backbone" or "Backbone@size" entries of --models. */
export function parseBenchModels(list: string, defaultSize: number): BenchModel[] {
  return list
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry.length > 0)
    .map((entry) => {
      const [backbone, size] = entry.split('@');
      const inputSize = size === undefined ? defaultSize : Number(size);
      if (!Number.isInteger(inputSize) || inputSize < 32) {
        throw new Error(`Invalid input size in "${entry}": expected Backbone@SIZE with an integer SIZE of at least 32.`);
      }
      const name = backbone as string;
      registerBuiltins();
      if (!hasBackbone(name)) {
        const configuration = hasConfiguration(name) ? getConfiguration(name) : undefined;
        const hint =
          configuration === undefined
            ? `Backbones: ${listBackbones()
                .map((b) => b.name)
                .join(', ')}.`
            : `"${name}" is a configuration; benchmark its backbone as ${configuration.backbone}@${configuration.inputSize}.`;
        throw new Error(`Unknown backbone "${name}" in --models. ${hint}`);
      }
      return { backbone: name, inputSize };
    });
}

/** FLOP counts per image of one benchmarked model (see lib/perf/flops.ts). */
export interface ModelCost {
  backbone: string;
  inputSize: number;
  parameters: number;
  forwardFlops: number;
  phase1TrainingFlops: number;
  phase2TrainingFlops: number;
}

interface RunRecord {
  repeat: number;
  backbone: string;
  inputSize: number;
  framework: 'ours' | 'keras';
  /** Position within the repeat's pair: 0 ran first. */
  order: number;
  wallSeconds: number;
  result?: RunResult;
  error?: string;
}

export interface BenchReport {
  date: string;
  command: string;
  options: BenchOptions;
  machine: MachineInfo;
  matMulGflops: number;
  peakGflops: number;
  costs: ModelCost[];
  runs: RunRecord[];
}

/** Runs a child process and returns its RESULT line, or throws with the tail of its error output. */
function runChild(command: string, args: string[], timeoutMinutes: number): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMinutes * 60_000);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`${command} could not start: ${error.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
      if (code === 0 && line !== undefined) {
        resolve(JSON.parse(line.slice('RESULT '.length)) as RunResult);
        return;
      }
      if (signal === 'SIGKILL') {
        reject(new Error(`${path.basename(args[0] ?? command)} timed out after ${timeoutMinutes} min. Raise --timeout.`));
        return;
      }
      // TensorFlow's start-up banner is not about the failure, so it is left out of the reason.
      const banner = /^(WARNING: All log messages before absl|I0000 |.*oneDNN custom operations are on)/;
      const lines = stderr
        .trim()
        .split('\n')
        .filter((l) => l.trim() !== '' && !banner.test(l));
      reject(new Error(`${path.basename(args[0] ?? command)} exited with ${code ?? signal}: ${lines.slice(-3).join(' | ') || 'no error output'}`));
    });
  });
}

async function modelCost(model: BenchModel, unfreeze: number | 'all'): Promise<{ cost: ModelCost; phase2Layers: string[]; dense: number[]; dropout: number; preprocessing: string }> {
  const configuration = resolveConfiguration(model.backbone);
  const fer = await createModel(configuration, { inputSize: model.inputSize, weights: 'random' });
  try {
    setTrainableBlocks(fer, 0);
    const phase1 = modelFlops(fer.model);
    setTrainableBlocks(fer, unfreeze);
    const phase2 = modelFlops(fer.model);
    const backbone = new Set(fer.backboneLayers);
    const phase2Layers = fer.model.layers.filter((l) => backbone.has(l.name) && l.trainable && l.weights.length > 0).map((l) => l.name);
    return {
      cost: {
        backbone: fer.backbone.name,
        inputSize: model.inputSize,
        parameters: fer.model.countParams(),
        forwardFlops: phase1.forward,
        phase1TrainingFlops: phase1.training,
        phase2TrainingFlops: phase2.training,
      },
      phase2Layers,
      dense: fer.configuration.dense,
      dropout: fer.configuration.dropout,
      preprocessing: fer.backbone.preprocessing,
    };
  } finally {
    fer.model.dispose();
  }
}

/** Runs the whole benchmark and writes results.json and results.md into options.outDir. */
export async function runBench(options: BenchOptions, command: string): Promise<BenchReport> {
  await initBackend('node');
  await fs.promises.mkdir(options.outDir, { recursive: true });
  const machine = machineInfo();
  const matMulGflops = await measureMatMulGflops();
  const peakGflops = options.peakGflops ?? machine.nominalPeakGflops;
  log.info(`bench: ${machine.cpuModel}, ${machine.cores} cores; nominal peak ${peakGflops.toFixed(0)} GFLOP/s (${machine.assumption}); measured matMul ${matMulGflops.toFixed(1)} GFLOP/s.`);

  const dataDir = resolveDataDir(options.dataDir);
  const prepared = await prepareSplits({
    dataDir,
    seed: options.seed,
    validationFraction: 0.1,
    limits: { train: options.trainImages, validation: options.validationImages, test: 1 },
    classAliases: {},
    checkDuplicates: false,
    silent: true,
  });
  const trainFiles = prepared.train.map((r) => ({ path: r.path, label: r.label }));

  const costs: ModelCost[] = [];
  const configs: RunConfig[] = [];
  for (const model of options.models) {
    const { cost, phase2Layers, dense, dropout, preprocessing } = await modelCost(model, options.unfreeze);
    costs.push(cost);
    configs.push({
      backbone: cost.backbone,
      inputSize: model.inputSize,
      batchSize: options.batchSize,
      dense,
      dropout,
      preprocessing,
      epochs: options.epochs,
      augment: options.augment,
      seed: options.seed,
      dataDir,
      trainImages: options.trainImages,
      validationImages: options.validationImages,
      trainFiles,
      phase2TrainableLayers: phase2Layers,
      unfreeze: options.unfreeze,
      inferenceRuns: options.inferenceRuns,
      workDir: '',
    });
  }

  const report: BenchReport = { date: new Date().toISOString(), command, options, machine, matMulGflops, peakGflops, costs, runs: [] };
  const kerasScript = path.resolve(__dirname, '..', '..', 'scripts', 'bench_keras.py');
  const workerScript = path.join(__dirname, 'worker.js');
  for (let repeat = 1; repeat <= options.repeats; repeat++) {
    for (const [i, base] of configs.entries()) {
      // Alternate which framework runs first, per repeat and per backbone.
      const oursFirst = (repeat + i) % 2 === 1;
      let frameworks: Array<'ours' | 'keras'> = oursFirst ? ['ours', 'keras'] : ['keras', 'ours'];
      if (!options.keras) {
        frameworks = ['ours'];
      }
      for (const [order, framework] of frameworks.entries()) {
        const workDir = fs.mkdtempSync(path.join(os.tmpdir(), `fer-bench-${framework}-`));
        const config: RunConfig = { ...base, workDir };
        const configFile = path.join(workDir, 'config.json');
        fs.writeFileSync(configFile, JSON.stringify(config));
        const record: RunRecord = { repeat, backbone: base.backbone, inputSize: base.inputSize, framework, order, wallSeconds: 0 };
        const start = performance.now();
        try {
          record.result =
            framework === 'ours'
              ? await runChild(process.execPath, [workerScript, configFile], options.timeoutMinutes)
              : await runChild(options.python, [kerasScript, configFile], options.timeoutMinutes);
        } catch (error) {
          record.error = (error as Error).message;
          log.warn(`bench: ${framework} ${base.backbone} repeat ${repeat} failed: ${record.error}`);
        } finally {
          fs.rmSync(workDir, { recursive: true, force: true });
        }
        record.wallSeconds = (performance.now() - start) / 1000;
        report.runs.push(record);
        log.info(`bench: repeat ${repeat}/${options.repeats} ${base.backbone}@${base.inputSize} ${framework} done in ${record.wallSeconds.toFixed(0)} s.`);
        await fs.promises.writeFile(path.join(options.outDir, 'results.json'), JSON.stringify(report, null, 1));
      }
    }
  }
  await fs.promises.writeFile(path.join(options.outDir, 'results.md'), formatReport(report));
  return report;
}

interface Summary {
  min: number;
  median: number;
  max: number;
  count: number;
}

function summarise(values: number[]): Summary | undefined {
  const finite = values.filter((v) => Number.isFinite(v));
  if (finite.length === 0) {
    return undefined;
  }
  return { min: Math.min(...finite), median: median(finite), max: Math.max(...finite), count: finite.length };
}

function fmt(value: number | undefined, digits = 1): string {
  return value === undefined || !Number.isFinite(value) ? '-' : value.toFixed(digits);
}

function fmtSummary(summary: Summary | undefined, digits = 2): string {
  return summary === undefined ? '-' : `${summary.median.toFixed(digits)} (${summary.min.toFixed(digits)}-${summary.max.toFixed(digits)})`;
}

type Metric = (result: RunResult) => number | undefined;

/** Values of `metric` for one backbone and framework over the repeats, and paired ratios ours/keras. */
function metricTable(report: BenchReport, backbone: string, inputSize: number, ours: Metric, keras: Metric, higherIsBetter: boolean) {
  const pick = (framework: 'ours' | 'keras', repeat: number) =>
    report.runs.find((r) => r.framework === framework && r.repeat === repeat && r.backbone === backbone && r.inputSize === inputSize)?.result;
  const oursValues: number[] = [];
  const kerasValues: number[] = [];
  const ratios: number[] = [];
  for (let repeat = 1; repeat <= report.options.repeats; repeat++) {
    const a = pick('ours', repeat);
    const b = pick('keras', repeat);
    const x = a === undefined ? undefined : ours(a);
    const y = b === undefined ? undefined : keras(b);
    if (x !== undefined) {
      oursValues.push(x);
    }
    if (y !== undefined) {
      kerasValues.push(y);
    }
    if (x !== undefined && y !== undefined) {
      ratios.push(higherIsBetter ? x / y : y / x);
    }
  }
  return { ours: summarise(oursValues), keras: summarise(kerasValues), ratio: summarise(ratios) };
}

/** Markdown tables of the report: throughput, latency, memory, and FLOP rates against the CPU's peak. */
export function formatReport(report: BenchReport): string {
  const lines: string[] = [];
  const { machine, options } = report;
  lines.push(`Date: ${report.date}`);
  lines.push(`Command: \`${report.command}\``);
  lines.push(
    `Machine: ${machine.cpuModel} (family ${machine.family ?? '?'}, model ${machine.modelNumber ?? '?'}), ${machine.cores} cores at ${fmt(machine.mhz, 0)} MHz, ` +
      `AVX2 ${machine.avx2 ? 'yes' : 'no'}, FMA ${machine.fma ? 'yes' : 'no'}, AVX-512 ${machine.avx512 ? 'yes' : 'no'}, ${machine.memoryGiB.toFixed(0)} GiB memory.`,
  );
  lines.push(`Peak: ${report.peakGflops.toFixed(1)} GFLOP/s nominal = ${machine.assumption}; measured 2048x2048 matMul on tfjs-node: ${report.matMulGflops.toFixed(1)} GFLOP/s.`);
  lines.push(
    `Settings: batch ${options.batchSize}, ${options.trainImages} training images, ${options.epochs} epochs per phase (the first is warm-up), ` +
      `phase 2 unfreezes ${options.unfreeze} blocks, augmentation ${options.augment ? 'on' : 'off'}, ${options.repeats} ${options.repeats === 1 ? 'repeat' : 'repeats'}.`,
  );
  const firstOurs = report.runs.find((r) => r.framework === 'ours' && r.result !== undefined)?.result;
  const firstKeras = report.runs.find((r) => r.framework === 'keras' && r.result !== undefined)?.result;
  lines.push(`Versions: ours ${JSON.stringify(firstOurs?.versions ?? {})}; Keras ${JSON.stringify(firstKeras?.versions ?? {})}.`);
  lines.push('');
  lines.push('Each cell: median (min-max) over repeats. Ratios are per repeat, "how many times faster ours is": throughput ours/Keras, latency Keras/ours.');
  lines.push('');

  const models = report.costs;
  const table = (title: string, header: string[], rows: string[][]) => {
    lines.push(`### ${title}`, '', `| ${header.join(' | ')} |`, `| ${header.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`);
    rows.forEach((row) => lines.push(`| ${row.join(' | ')} |`));
    lines.push('');
  };

  table(
    'Training throughput (images/s, data loading included)',
    ['model', 'phase 1 ours', 'phase 1 Keras', 'phase 1 ratio', 'phase 2 ours', 'phase 2 Keras', 'phase 2 ratio'],
    models.map((m) => {
      const p1 = metricTable(report, m.backbone, m.inputSize, (r) => r.phase1.imagesPerSecond, (r) => r.phase1.imagesPerSecond, true);
      const p2 = metricTable(report, m.backbone, m.inputSize, (r) => r.phase2.imagesPerSecond, (r) => r.phase2.imagesPerSecond, true);
      return [`${m.backbone}@${m.inputSize}`, fmtSummary(p1.ours, 1), fmtSummary(p1.keras, 1), fmtSummary(p1.ratio), fmtSummary(p2.ours, 1), fmtSummary(p2.keras, 1), fmtSummary(p2.ratio)];
    }),
  );
  table(
    'First epoch of each phase (images/s; start-up, tracing, cache fills and, for cached phase 1, feature extraction)',
    ['model', 'phase 1 ours', 'phase 1 Keras', 'phase 2 ours', 'phase 2 Keras', 'phase 1 cached'],
    models.map((m) => {
      const p1 = metricTable(report, m.backbone, m.inputSize, (r) => r.phase1.firstEpochImagesPerSecond, (r) => r.phase1.firstEpochImagesPerSecond, true);
      const p2 = metricTable(report, m.backbone, m.inputSize, (r) => r.phase2.firstEpochImagesPerSecond, (r) => r.phase2.firstEpochImagesPerSecond, true);
      const ours = report.runs.find((r) => r.framework === 'ours' && r.backbone === m.backbone && r.inputSize === m.inputSize && r.result !== undefined);
      let cached = '-';
      if (ours?.result?.phase1Cached !== undefined) {
        cached = ours.result.phase1Cached ? 'yes' : 'no';
      }
      return [`${m.backbone}@${m.inputSize}`, fmtSummary(p1.ours, 1), fmtSummary(p1.keras, 1), fmtSummary(p2.ours, 1), fmtSummary(p2.keras, 1), cached];
    }),
  );

  const latency = (name: string): Metric => (r) => r.inference[name]?.batch1Ms;
  const throughput = (name: string): Metric => (r) => r.inference[name]?.batch32ImagesPerSecond;
  table(
    'Inference latency per face at batch 1 (ms; speed-up = other / ONNX Runtime)',
    ['model', 'ONNX Runtime', 'tfjs-node', 'Keras predict', 'Keras call', 'vs Keras predict', 'vs tfjs-node', 'vs Keras call'],
    models.map((m) => {
      const vsKeras = metricTable(report, m.backbone, m.inputSize, latency('onnx'), latency('keras-predict'), false);
      const vsCall = metricTable(report, m.backbone, m.inputSize, latency('onnx'), latency('keras-call'), false);
      const tfjsVsKeras = metricTable(report, m.backbone, m.inputSize, latency('tfjs'), latency('keras-predict'), false);
      const tfjsRatios = report.runs
        .filter((r) => r.framework === 'ours' && r.backbone === m.backbone && r.inputSize === m.inputSize && r.result !== undefined)
        .map((r) => (r.result?.inference['tfjs']?.batch1Ms ?? NaN) / (r.result?.inference['onnx']?.batch1Ms ?? NaN));
      return [
        `${m.backbone}@${m.inputSize}`,
        fmtSummary(vsKeras.ours),
        fmtSummary(tfjsVsKeras.ours),
        fmtSummary(vsKeras.keras),
        fmtSummary(vsCall.keras),
        fmtSummary(vsKeras.ratio),
        fmtSummary(summarise(tfjsRatios)),
        fmtSummary(vsCall.ratio),
      ];
    }),
  );
  table(
    'Inference throughput at batch 32 (images/s)',
    ['model', 'ONNX Runtime', 'tfjs-node', 'Keras predict', 'ONNX / Keras predict'],
    models.map((m) => {
      const onnx = metricTable(report, m.backbone, m.inputSize, throughput('onnx'), throughput('keras-predict'), true);
      const tfjs = metricTable(report, m.backbone, m.inputSize, throughput('tfjs'), throughput('keras-predict'), true);
      return [`${m.backbone}@${m.inputSize}`, fmtSummary(onnx.ours, 0), fmtSummary(tfjs.ours, 0), fmtSummary(onnx.keras, 0), fmtSummary(onnx.ratio)];
    }),
  );
  table(
    'Peak memory of the whole process (MiB; training, then inference)',
    ['model', 'ours', 'Keras', 'ours / Keras'],
    models.map((m) => {
      const rss = metricTable(report, m.backbone, m.inputSize, (r) => r.peakRssBytes / 2 ** 20, (r) => r.peakRssBytes / 2 ** 20, true);
      return [`${m.backbone}@${m.inputSize}`, fmtSummary(rss.ours, 0), fmtSummary(rss.keras, 0), fmtSummary(rss.ratio)];
    }),
  );

  const gflops = (flops: number, perSecond: number | undefined) => (perSecond === undefined ? undefined : (flops * perSecond) / 1e9);
  const percent = (value: number | undefined) => (value === undefined ? '-' : `${((value / report.peakGflops) * 100).toFixed(0)}%`);
  table(
    `Achieved GFLOP/s (convolution and dense multiply-adds x 2 per image, times images/s; % of the ${report.peakGflops.toFixed(0)} GFLOP/s nominal peak)`,
    ['model', 'MFLOP fwd / phase 1 / phase 2', 'phase 1 ours', 'phase 1 Keras', 'phase 2 ours', 'phase 2 Keras', 'batch 32 ONNX', 'batch 32 Keras'],
    models.map((m) => {
      const med = (framework: 'ours' | 'keras', metric: Metric) =>
        summarise(
          report.runs
            .filter((r) => r.framework === framework && r.backbone === m.backbone && r.inputSize === m.inputSize && r.result !== undefined)
            .map((r) => metric(r.result as RunResult) ?? NaN),
        )?.median;
      const cell = (value: number | undefined) => (value === undefined ? '-' : `${value.toFixed(1)} (${percent(value)})`);
      return [
        `${m.backbone}@${m.inputSize}`,
        `${(m.forwardFlops / 1e6).toFixed(0)} / ${(m.phase1TrainingFlops / 1e6).toFixed(0)} / ${(m.phase2TrainingFlops / 1e6).toFixed(0)}`,
        cell(gflops(m.phase1TrainingFlops, med('ours', (r) => r.phase1.imagesPerSecond))),
        cell(gflops(m.phase1TrainingFlops, med('keras', (r) => r.phase1.imagesPerSecond))),
        cell(gflops(m.phase2TrainingFlops, med('ours', (r) => r.phase2.imagesPerSecond))),
        cell(gflops(m.phase2TrainingFlops, med('keras', (r) => r.phase2.imagesPerSecond))),
        cell(gflops(m.forwardFlops, med('ours', throughput('onnx')))),
        cell(gflops(m.forwardFlops, med('keras', throughput('keras-predict')))),
      ];
    }),
  );

  const failures = report.runs.filter((r) => r.error !== undefined);
  if (failures.length > 0) {
    lines.push('### Failed runs', '');
    failures.forEach((r) => lines.push(`- repeat ${r.repeat}, ${r.backbone}@${r.inputSize}, ${r.framework}: ${r.error}`));
    lines.push('');
  }
  // Notes that differ only in a trailing time ("... 0.4 s") are merged into one line with the range over repeats.
  const notes = new Map<string, number[]>();
  for (const r of report.runs) {
    for (const note of r.result?.notes ?? []) {
      const time = /([\d.]+) s$/.exec(note);
      const key = `${r.framework} ${r.backbone}@${r.inputSize}: ${time === null ? note : note.slice(0, time.index)}`;
      const seconds = notes.get(key) ?? [];
      if (time !== null) {
        seconds.push(Number(time[1]));
      }
      notes.set(key, seconds);
    }
  }
  if (notes.size > 0) {
    lines.push('### Notes from the runs', '');
    notes.forEach((seconds, key) => {
      const low = Math.min(...seconds);
      const high = Math.max(...seconds);
      let range = '';
      if (seconds.length > 0) {
        range = low === high ? `${low} s` : `${low}-${high} s`;
      }
      lines.push(`- ${key}${range}`);
    });
    lines.push('');
  }
  return lines.join('\n');
}
