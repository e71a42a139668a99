/**
 * End-to-end training on a small seeded subset of FER-2013: the run folder,
 * the exported model, the test evaluation, and exact resumption after an
 * interrupt.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import { CANONICAL_CLASSES } from '../lib/classes';
import { loadNamedTensors } from '../lib/models/io';
import { loadRun } from '../lib/train/load_run';
import type { TrainOptions } from '../lib/train/options';
import { TrainingInterruptedError, train, type TrainResult } from '../lib/train/trainer';

const DATA = process.env.FER_DATA ?? path.resolve('data/fer2013');
const WORK = fs.mkdtempSync(path.join(os.tmpdir(), 'fer-train-test-'));

const TRAIN_IMAGES = 140;

/** Small enough for seconds per epoch on two cores, big enough for 9 batches per epoch. */
function smallRun(runDir: string): TrainOptions {
  return {
    model: 'MobileNet-0.25',
    dataDir: DATA,
    runDir,
    seed: 7,
    inputSize: 32,
    batchSize: 16,
    phase1Epochs: 2,
    phase2Epochs: 1,
    unfreezeBlocks: 2,
    limits: { train: TRAIN_IMAGES, validation: 70, test: 70 },
    figures: true,
    silent: true,
  };
}

async function withInterruptAfter<T>(steps: number, body: () => Promise<T>): Promise<T> {
  process.env.FER_INTERRUPT_AFTER_STEPS = String(steps);
  try {
    return await body();
  } finally {
    delete process.env.FER_INTERRUPT_AFTER_STEPS;
  }
}

let reference: TrainResult;
const referenceDir = path.join(WORK, 'reference');

beforeAll(async () => {
  if (!fs.existsSync(DATA)) {
    throw new Error(`FER-2013 not found at ${DATA}; run "npm run setup" or set FER_DATA (see data/README.md).`);
  }
  await initBackend('node');
  reference = await train(smallRun(referenceDir));
}, 600_000);

afterAll(() => {
  fs.rmSync(WORK, { recursive: true, force: true });
});

describe('training run folder', () => {
  it('writes every run file', () => {
    const expected = [
      'config.json',
      'classes.json',
      'preprocessing.json',
      'data-report.json',
      'history.json',
      'history.csv',
      'train.log',
      'checkpoint/state.json',
      'best/model.bin',
      'model/model.json',
      'model/weights.bin',
      'evaluation/test/metrics.json',
      'evaluation/test/report.txt',
      'evaluation/test/per_class.csv',
      'evaluation/test/predictions.csv',
      'evaluation/test/confusion_matrix.png',
      'evaluation/test/confusion_matrix_normalized.png',
      'evaluation/test/roc.png',
      'figures/training_curves.png',
    ];
    for (const file of expected) {
      expect(fs.existsSync(path.join(referenceDir, file)), file).toBe(true);
    }
  });

  it('stores classes in canonical order', () => {
    const classes = JSON.parse(fs.readFileSync(path.join(referenceDir, 'classes.json'), 'utf8'));
    expect(classes).toEqual([...CANONICAL_CLASSES]);
  });

  it('records both phases in history', () => {
    expect(reference.history.map((r) => r.phase)).toEqual([1, 1, 2]);
    expect(reference.history.map((r) => r.globalEpoch)).toEqual([1, 2, 3]);
    const csv = fs.readFileSync(path.join(referenceDir, 'history.csv'), 'utf8').trim().split('\n');
    expect(csv).toHaveLength(4);
  });

  it('covers the whole training set every epoch', () => {
    const config = JSON.parse(fs.readFileSync(path.join(referenceDir, 'config.json'), 'utf8'));
    expect(config.batchSize).toBe(16);
    // 140 images in batches of 16: eight full batches and a last one of 12.
    for (const record of reference.history) {
      expect(record.trainImages).toBe(TRAIN_IMAGES);
    }
  });

  it('marks the checkpoint finished', () => {
    const state = JSON.parse(fs.readFileSync(path.join(referenceDir, 'checkpoint/state.json'), 'utf8'));
    expect(state.finished).toBe(true);
    expect(state.best.globalEpoch).toBe(reference.best?.globalEpoch);
  });

  it('keeps the best validation epoch', () => {
    const best = Math.max(...reference.history.map((r) => r.valMacroF1));
    expect(reference.best?.valMacroF1).toBe(best);
  });

  it('evaluates the test split', () => {
    const report = reference.testReport;
    expect(report).toBeDefined();
    expect(report?.numSamples).toBeGreaterThanOrEqual(69);
    const metrics = JSON.parse(fs.readFileSync(path.join(referenceDir, 'evaluation/test/metrics.json'), 'utf8'));
    expect(metrics.accuracy).toBe(report?.accuracy);
    expect(metrics.split).toBe('test');
  });

  it('writes predictions matching the accuracy', () => {
    const rows = fs.readFileSync(path.join(referenceDir, 'evaluation/test/predictions.csv'), 'utf8').trim().split('\n').slice(1);
    const correct = rows.filter((row) => {
      const cells = row.split(',');
      return cells[1] === cells[2];
    }).length;
    expect(correct / rows.length).toBeCloseTo(reference.testReport?.accuracy ?? -1, 12);
  });
});

describe('exported model', () => {
  it('loads in plain tfjs with the same outputs', async () => {
    const run = await loadRun(referenceDir);
    const modelJson = JSON.parse(fs.readFileSync(path.join(referenceDir, 'model/model.json'), 'utf8'));
    const weightData = fs.readFileSync(path.join(referenceDir, 'model/weights.bin'));
    const plain = await tf.loadLayersModel(
      tf.io.fromMemory({
        modelTopology: modelJson.modelTopology,
        weightSpecs: modelJson.weightsManifest[0].weights,
        weightData: weightData.buffer.slice(weightData.byteOffset, weightData.byteOffset + weightData.byteLength),
      }),
    );
    const classNames = plain.layers.map((l) => l.getClassName());
    expect(classNames).toContain('BatchNormalization');
    expect(classNames).toContain('Dropout');
    const x = tf.randomUniform([4, 32, 32, 3], -1, 1, 'float32', 3);
    const ours = run.fer.model.predict(x) as tf.Tensor;
    const theirs = plain.predict(x) as tf.Tensor;
    const diff = tf.max(tf.abs(tf.sub(ours, theirs))).dataSync()[0] as number;
    expect(diff).toBeLessThan(1e-5);
  });

  it('carries metadata for other consumers', () => {
    const modelJson = JSON.parse(fs.readFileSync(path.join(referenceDir, 'model/model.json'), 'utf8'));
    expect(modelJson.format).toBe('layers-model');
    expect(modelJson.userDefinedMetadata.classNames).toEqual([...CANONICAL_CLASSES]);
    expect(modelJson.userDefinedMetadata.preprocessing).toBe('tf');
    expect(modelJson.userDefinedMetadata.inputSize).toBe(32);
  });
});

async function expectSameAsReference(runDir: string, result: TrainResult): Promise<void> {
  expect(result.history).toHaveLength(reference.history.length);
  result.history.forEach((record, i) => {
    const ref = reference.history[i];
    expect(record.phase).toBe(ref?.phase);
    expect(record.trainLoss).toBeCloseTo(ref?.trainLoss ?? NaN, 5);
    expect(record.valLoss).toBeCloseTo(ref?.valLoss ?? NaN, 5);
    expect(record.valMacroF1).toBeCloseTo(ref?.valMacroF1 ?? NaN, 6);
  });
  const ours = await loadNamedTensors(path.join(runDir, 'best/model'));
  const theirs = await loadNamedTensors(path.join(referenceDir, 'best/model'));
  let maxDiff = 0;
  for (const [name, tensor] of theirs) {
    const other = ours.get(name);
    expect(other, name).toBeDefined();
    maxDiff = Math.max(maxDiff, tf.max(tf.abs(tf.sub(tensor, other as tf.Tensor))).dataSync()[0] as number);
  }
  expect(maxDiff).toBeLessThan(1e-5);
}

describe('interrupted run', () => {
  it('resumes mid-epoch in phase 1 exactly', async () => {
    const runDir = path.join(WORK, 'resume-phase1');
    await expect(withInterruptAfter(3, () => train(smallRun(runDir)))).rejects.toBeInstanceOf(TrainingInterruptedError);
    const state = JSON.parse(fs.readFileSync(path.join(runDir, 'checkpoint/state.json'), 'utf8'));
    expect(state.phase).toBe(1);
    expect(state.step).toBe(3);
    const resumed = await train({ model: 'MobileNet-0.25', resume: runDir, silent: true });
    await expectSameAsReference(runDir, resumed);
  });

  it('resumes mid-epoch in phase 2 exactly', async () => {
    const runDir = path.join(WORK, 'resume-phase2');
    // Phase 1 has 2 epochs of 9 batches, so batch 21 is the third of phase 2.
    await expect(withInterruptAfter(21, () => train(smallRun(runDir)))).rejects.toBeInstanceOf(TrainingInterruptedError);
    const state = JSON.parse(fs.readFileSync(path.join(runDir, 'checkpoint/state.json'), 'utf8'));
    expect(state.phase).toBe(2);
    expect(state.step).toBe(3);
    const resumed = await train({ model: 'MobileNet-0.25', resume: runDir, silent: true });
    await expectSameAsReference(runDir, resumed);
  });

  it('rejects a new run in a used folder', async () => {
    await expect(train(smallRun(referenceDir))).rejects.toThrow(/already holds a checkpoint/);
  });
});
