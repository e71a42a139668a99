/**
 * Phase 1 on cached backbone features against phase 1 through the whole
 * model, on a small seeded FER-2013 subset with augmentation off: the same
 * losses, metrics and head weights within float tolerance, resumption after
 * an interrupt, and the log lines that report which path ran and why.
 *
 * What may differ: the cached features come from batches of 64 in inference
 * mode, the uncached ones from training batches of 16, so the convolutions
 * sum in other orders and results agree to about 1e-6, not bit for bit.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import type { AugmentationSettings } from '../lib/data/augment';
import { loadNamedTensors } from '../lib/models/io';
import type { TrainOptions } from '../lib/train/options';
import { train, TrainingInterruptedError, type TrainResult } from '../lib/train/trainer';
import { trainLog, withEnv } from './support';

const DATA = process.env.FER_DATA ?? path.resolve('data/fer2013');
const WORK = fs.mkdtempSync(path.join(os.tmpdir(), 'fer-feature-cache-test-'));

const NO_AUGMENTATION: AugmentationSettings = { rotationDegrees: 0, widthShift: 0, heightShift: 0, horizontalFlip: false };

function headOnlyRun(runDir: string, overrides: Partial<TrainOptions> = {}): TrainOptions {
  return {
    model: 'MobileNet-0.25',
    dataDir: DATA,
    runDir,
    seed: 5,
    inputSize: 32,
    batchSize: 16,
    phase1Epochs: 2,
    phase2Epochs: 0,
    patience: 5,
    augmentation: NO_AUGMENTATION,
    limits: { train: 140, validation: 70, test: 35 },
    evaluateTest: false,
    figures: false,
    checkDuplicates: false,
    silent: true,
    ...overrides,
  };
}

async function maxWeightDifference(runA: string, runB: string): Promise<number> {
  const a = await loadNamedTensors(path.join(runA, 'best/model'));
  const b = await loadNamedTensors(path.join(runB, 'best/model'));
  let max = 0;
  for (const [name, tensor] of a) {
    const other = b.get(name);
    if (other === undefined) {
      throw new Error(`weight ${name} of ${runA} is missing in ${runB}`);
    }
    max = Math.max(max, tf.max(tf.abs(tf.sub(tensor, other))).dataSync()[0] as number);
  }
  return max;
}

function expectSameHistory(actual: TrainResult, expected: TrainResult): void {
  expect(actual.history).toHaveLength(expected.history.length);
  actual.history.forEach((record, i) => {
    const ref = expected.history[i];
    expect(record.trainImages).toBe(ref?.trainImages);
    expect(record.trainLoss).toBeCloseTo(ref?.trainLoss ?? NaN, 5);
    expect(record.trainAccuracy).toBeCloseTo(ref?.trainAccuracy ?? NaN, 6);
    expect(record.valLoss).toBeCloseTo(ref?.valLoss ?? NaN, 5);
    expect(record.valAccuracy).toBeCloseTo(ref?.valAccuracy ?? NaN, 6);
    expect(record.valMacroF1).toBeCloseTo(ref?.valMacroF1 ?? NaN, 6);
  });
}

const uncachedDir = path.join(WORK, 'uncached');
const cachedDir = path.join(WORK, 'cached');
let uncached: TrainResult;
let cached: TrainResult;

beforeAll(async () => {
  if (!fs.existsSync(DATA)) {
    throw new Error(`FER-2013 not found at ${DATA}; run "npm run setup" or set FER_DATA (see data/README.md).`);
  }
  await initBackend('node');
  uncached = await withEnv({ FER_FEATURE_CACHE: 'off' }, () => train(headOnlyRun(uncachedDir)));
  cached = await train(headOnlyRun(cachedDir));
}, 600_000);

afterAll(() => {
  fs.rmSync(WORK, { recursive: true, force: true });
});

describe('phase 1 feature cache', () => {
  it('logs that features are cached', () => {
    expect(trainLog(cachedDir)).toMatch(/pooled features are computed once and only the head trains on them/);
    // MobileNet-0.25's last pointwise convolution has 1024 * 0.25 = 256 filters.
    expect(trainLog(cachedDir)).toMatch(/backbone features cached for 140 training and 70 validation images \(256 channels/);
  });

  it('logs why the uncached run computed features', () => {
    expect(trainLog(uncachedDir)).toMatch(/not cached: disabled by FER_FEATURE_CACHE=off/);
  });

  it('gives the same losses and metrics', () => {
    expectSameHistory(cached, uncached);
  });

  it('gives the same head weights', async () => {
    expect(await maxWeightDifference(cachedDir, uncachedDir)).toBeLessThan(1e-5);
  });

  it('resumes mid-epoch to the same result', async () => {
    const runDir = path.join(WORK, 'resumed');
    await expect(withEnv({ FER_INTERRUPT_AFTER_STEPS: '4' }, () => train(headOnlyRun(runDir)))).rejects.toBeInstanceOf(TrainingInterruptedError);
    const state = JSON.parse(fs.readFileSync(path.join(runDir, 'checkpoint/state.json'), 'utf8'));
    expect(state.phase).toBe(1);
    expect(state.step).toBe(4);
    const resumed = await train({ model: 'MobileNet-0.25', resume: runDir, silent: true });
    expectSameHistory(resumed, cached);
    expect(await maxWeightDifference(runDir, cachedDir)).toBeLessThan(1e-5);
  });

  it('is not used with augmentation on, and says why', async () => {
    const runDir = path.join(WORK, 'augmented');
    await train(headOnlyRun(runDir, { phase1Epochs: 1, augmentation: { rotationDegrees: 10, widthShift: 0, heightShift: 0, horizontalFlip: false } }));
    expect(trainLog(runDir)).toMatch(/not cached: augmentation is on/);
    expect(trainLog(runDir)).not.toMatch(/features cached/);
  });
});

/*
 * EfficientNetB0 runs too, for its dropout masks' log line. With random
 * weights and default batch-norm statistics its pooled features are all
 * near 0, so only MobileNet's comparison (ImageNet weights) carries weight.
 * tests/onnx_export.test.ts checks the masks themselves against tfjs.
 */
describe.each([
  { model: 'MobileNet-0.25', masks: false, compare: true },
  { model: 'EfficientNetB0', masks: true, compare: false },
])('phase 1 with the frozen $model in ONNX Runtime', ({ model, masks, compare }) => {
  const AUGMENTATION: AugmentationSettings = { rotationDegrees: 10, widthShift: 0.1, heightShift: 0.1, horizontalFlip: true };
  const tfjsDir = path.join(WORK, `${model}-tfjs`);
  const onnxDir = path.join(WORK, `${model}-onnx`);
  let onTfjs: TrainResult;
  let onOnnx: TrainResult;

  beforeAll(async () => {
    const options = (runDir: string) =>
      headOnlyRun(runDir, { model, augmentation: AUGMENTATION, phase1Epochs: 1, weights: model === 'MobileNet-0.25' ? undefined : 'random' });
    onTfjs = await withEnv({ FER_ONNX: 'off' }, () => train(options(tfjsDir)));
    onOnnx = await train(options(onnxDir));
  }, 600_000);

  it('logs which path ran', () => {
    expect(trainLog(onnxDir)).toMatch(/the frozen backbone runs in ONNX Runtime/);
    expect(trainLog(onnxDir).includes('dropout layers fed seeded masks')).toBe(masks);
    expect(trainLog(tfjsDir)).toMatch(/runs on TensorFlow.js, not ONNX Runtime: disabled by FER_ONNX=off/);
  });

  it.runIf(compare)('rejects an unknown FER_ONNX value', async () => {
    await expect(withEnv({ FER_ONNX: 'disable' }, () => train(headOnlyRun(path.join(WORK, 'bad-onnx-value'))))).rejects.toThrow(
      'Invalid FER_ONNX value "disable"',
    );
  });

  it.runIf(compare)('gives the losses, metrics and head weights of the TensorFlow.js path', async () => {
    expectSameHistory(onOnnx, onTfjs);
    expect(await maxWeightDifference(onnxDir, tfjsDir)).toBeLessThan(1e-5);
  });
});
