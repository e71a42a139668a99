/**
 * One benchmark run of the toolkit, in its own process so that the peak
 * memory measured is this run's alone. `node dist/perf/worker.js CONFIG.json`
 * trains with `train()` as `fer train` does: images decoded and cached by
 * ImageStore, batches prefetched, augmentation and preprocessing per batch,
 * phase 1's frozen backbone in ONNX Runtime where the trainer uses it.
 * It then times inference on TensorFlow.js and ONNX Runtime and prints one
 * line `RESULT {json}` (a RunResult) on stdout.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import * as tf from '@tensorflow/tfjs';

import { initBackend } from '../backend';
import { STUDY_AUGMENTATION } from '../data/augment';
import { exportOnnx } from '../onnx/export';
import { OnnxModel, onnxRuntimeError, onnxRuntimeVersion } from '../onnx/runtime';
import type { EpochRecord } from '../train/history';
import { loadRun } from '../train/load_run';
import { train } from '../train/trainer';
import { setLogLevel } from '../util/log';
import type { InferenceResult, PhaseResult, RunConfig, RunResult } from './types';

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

function phaseResult(history: EpochRecord[], phase: 1 | 2): PhaseResult {
  const records = history.filter((r) => r.phase === phase);
  const seconds = records.map((r) => r.trainImages / r.imagesPerSecond);
  const timed = records.slice(1);
  const timedImages = timed.reduce((sum, r) => sum + r.trainImages, 0);
  const timedSeconds = seconds.slice(1).reduce((sum, s) => sum + s, 0);
  return {
    imagesPerSecond: timed.length > 0 ? timedImages / timedSeconds : NaN,
    firstEpochImagesPerSecond: records[0]?.imagesPerSecond ?? NaN,
    epochSeconds: seconds,
  };
}

/** Times `call` on batch 1 (median of `runs`) and batch 32 (median of a fifth as many), after warm-up calls. */
async function timeInference(call: (batch: 1 | 32) => Promise<void>, runs: number): Promise<InferenceResult> {
  for (let i = 0; i < 3; i++) {
    await call(1);
  }
  const single: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await call(1);
    single.push(performance.now() - start);
  }
  await call(32);
  const batched: number[] = [];
  for (let i = 0; i < Math.max(3, Math.round(runs / 5)); i++) {
    const start = performance.now();
    await call(32);
    batched.push(performance.now() - start);
  }
  return { batch1Ms: median(single), batch32ImagesPerSecond: 32 / (median(batched) / 1000) };
}

async function runWorker(config: RunConfig): Promise<RunResult> {
  const backend = await initBackend('node');
  const notes: string[] = [];
  const runDir = path.join(config.workDir, 'run');
  const result = await train({
    model: config.backbone,
    dataDir: config.dataDir,
    runDir,
    seed: config.seed,
    inputSize: config.inputSize,
    batchSize: config.batchSize,
    dense: config.dense,
    dropout: config.dropout,
    phase1Epochs: config.epochs,
    phase2Epochs: config.epochs,
    unfreezeBlocks: config.unfreeze,
    // Every epoch runs: the benchmark measures speed, not when to stop.
    patience: 1_000_000,
    augmentation: config.augment ? STUDY_AUGMENTATION : { rotationDegrees: 0, widthShift: 0, heightShift: 0, horizontalFlip: false },
    limits: { train: config.trainImages, validation: config.validationImages, test: 1 },
    weights: 'random',
    evaluateTest: false,
    figures: false,
    checkDuplicates: false,
    checkpointMinutes: 1_000_000,
    silent: true,
  });
  const trainLog = fs.readFileSync(path.join(runDir, 'train.log'), 'utf8');
  const cached = /pooled features are computed once/.test(trainLog);
  const cacheLine = /phase 1: (backbone features are computed for every batch, not cached: .*|augmentation is off and .*)$/m.exec(trainLog)?.[1];
  if (cacheLine !== undefined) {
    notes.push(`phase 1: ${cacheLine}`);
  }
  const backboneLine = /phase 1: (the frozen backbone runs .*)$/m.exec(trainLog)?.[1];
  if (backboneLine !== undefined) {
    notes.push(`phase 1: ${backboneLine}`);
  }
  for (const [phase, line] of [
    [1, /phase 1: (the head's training step .*)$/m.exec(trainLog)?.[1]],
    [2, /phase 2: (the training step .*)$/m.exec(trainLog)?.[1]],
  ] as const) {
    if (line !== undefined) {
      notes.push(`phase ${phase}: ${line}`);
    }
  }

  const run = await loadRun(runDir);
  const model = run.fer.model;
  const size = config.inputSize;
  const [low, high] = run.fer.backbone.preprocessing === 'none' ? [0, 255] : [-1, 1];
  const inputs = { 1: tf.randomUniform([1, size, size, 3], low, high, 'float32', 1), 32: tf.randomUniform([32, size, size, 3], low, high, 'float32', 2) };
  const inference: Record<string, InferenceResult> = {};
  inference['tfjs'] = await timeInference(async (batch) => {
    const output = model.predict(inputs[batch]) as tf.Tensor;
    await output.data();
    output.dispose();
  }, config.inferenceRuns);

  const versions: Record<string, string> = {
    node: process.versions.node,
    tfjs: tf.version.tfjs,
    backend: backend.name,
    tensorflow: String((tf.backend() as unknown as { binding?: { TF_Version?: string } }).binding?.TF_Version ?? 'unknown'),
  };
  const ortVersion = onnxRuntimeVersion();
  if (ortVersion === undefined) {
    notes.push(`ONNX Runtime not measured: ${onnxRuntimeError() ?? 'not available'}`);
  } else {
    versions['onnxruntime'] = ortVersion;
    const exportStart = performance.now();
    const onnx = await OnnxModel.create(exportOnnx(model));
    notes.push(`ONNX export and session creation: ${((performance.now() - exportStart) / 1000).toFixed(1)} s`);
    const arrays = { 1: inputs[1].dataSync() as Float32Array, 32: inputs[32].dataSync() as Float32Array };
    inference['onnx'] = await timeInference(async (batch) => {
      await onnx.run(arrays[batch], [batch, size, size, 3]);
    }, config.inferenceRuns);
    await onnx.dispose();
  }

  return {
    framework: 'ours',
    backbone: config.backbone,
    inputSize: size,
    phase1: phaseResult(result.history, 1),
    phase2: phaseResult(result.history, 2),
    phase1Cached: cached,
    inference,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    versions,
    notes,
  };
}

if (require.main === module) {
  const configFile = process.argv[2];
  if (configFile === undefined) {
    process.stderr.write('usage: node dist/perf/worker.js CONFIG.json (written by "fer bench")\n');
    process.exit(2);
  }
  setLogLevel('warn');
  const config = JSON.parse(fs.readFileSync(configFile, 'utf8')) as RunConfig;
  runWorker(config).then(
    (result) => {
      process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
      process.exit(0);
    },
    (error: Error) => {
      process.stderr.write(`error: ${error.stack ?? error.message}\n`);
      process.exit(1);
    },
  );
}
