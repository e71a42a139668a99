/**
 * Training with graph steps (lib/graph/train_step.ts: the head on pooled
 * features in phase 1, the whole model in phase 2) against eager steps
 * (FER_GRAPH=off), in the whole trainer: a small FER-2013 subset with
 * augmentation and balanced class weights, MobileNet with ImageNet weights
 * and its top two blocks unfrozen. Both runs must log which path ran and
 * agree in every epoch's losses and metrics. The graph run must also resume
 * exactly after an interrupt in phase 2.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import type { TrainOptions } from '../lib/train/options';
import { train, TrainingInterruptedError, type TrainResult } from '../lib/train/trainer';
import { trainLog, withEnv } from './support';

const DATA = process.env.FER_DATA ?? path.resolve('data/fer2013');
const WORK = fs.mkdtempSync(path.join(os.tmpdir(), 'fer-graph-train-test-'));

function run(runDir: string): TrainOptions {
  return {
    model: 'MobileNet-0.25',
    dataDir: DATA,
    runDir,
    seed: 11,
    inputSize: 32,
    batchSize: 16,
    phase1Epochs: 1,
    phase2Epochs: 2,
    unfreezeBlocks: 2,
    patience: 5,
    classWeight: 'balanced',
    limits: { train: 150, validation: 70, test: 35 },
    evaluateTest: false,
    figures: false,
    checkDuplicates: false,
    silent: true,
  };
}

const graphDir = path.join(WORK, 'graph');
const eagerDir = path.join(WORK, 'eager');
let onGraph: TrainResult;
let eager: TrainResult;

beforeAll(async () => {
  if (!fs.existsSync(DATA)) {
    throw new Error(`FER-2013 not found at ${DATA}; run "npm run setup" or set FER_DATA (see data/README.md).`);
  }
  await initBackend('node');
  eager = await withEnv({ FER_GRAPH: 'off' }, () => train(run(eagerDir)));
  onGraph = await train(run(graphDir));
}, 600_000);

afterAll(() => {
  fs.rmSync(WORK, { recursive: true, force: true });
});

describe('training steps as TensorFlow graphs', () => {
  it('logs which path ran', () => {
    expect(trainLog(graphDir)).toMatch(/phase 2: the training step \(forward, gradients, Adam\) runs as one TensorFlow graph, built in .*1 dropout layer fed seeded masks/);
    expect(trainLog(eagerDir)).toMatch(/phase 2: the training step runs eagerly, not as a TensorFlow graph: disabled by FER_GRAPH=off/);
    expect(trainLog(graphDir)).toMatch(/phase 1: the head's training step \(forward, gradients, Adam\) runs as one TensorFlow graph, built in .*1 dropout layer fed seeded masks/);
    expect(trainLog(eagerDir)).toMatch(/phase 1: the head's training step runs eagerly, not as a TensorFlow graph: disabled by FER_GRAPH=off/);
  });

  it('matches eager losses and metrics', () => {
    expect(onGraph.history.map((r) => r.phase)).toEqual([1, 2, 2]);
    expect(onGraph.history).toHaveLength(eager.history.length);
    onGraph.history.forEach((record, i) => {
      const ref = eager.history[i];
      expect(record.trainImages).toBe(ref?.trainImages);
      expect(record.trainLoss).toBeCloseTo(ref?.trainLoss ?? NaN, 4);
      expect(record.trainAccuracy).toBeCloseTo(ref?.trainAccuracy ?? NaN, 6);
      expect(record.valLoss).toBeCloseTo(ref?.valLoss ?? NaN, 4);
      expect(record.valAccuracy).toBeCloseTo(ref?.valAccuracy ?? NaN, 6);
    });
  });

  it('resumes phase 2 exactly', async () => {
    const runDir = path.join(WORK, 'resume');
    // Phase 1 has one epoch of 10 batches, so batch 13 is the third of phase 2.
    process.env.FER_INTERRUPT_AFTER_STEPS = '13';
    try {
      await expect(train(run(runDir))).rejects.toBeInstanceOf(TrainingInterruptedError);
    } finally {
      delete process.env.FER_INTERRUPT_AFTER_STEPS;
    }
    const state = JSON.parse(fs.readFileSync(path.join(runDir, 'checkpoint/state.json'), 'utf8'));
    expect(state.phase).toBe(2);
    expect(state.step).toBe(3);
    const resumed = await train({ model: 'MobileNet-0.25', resume: runDir, silent: true });
    expect(resumed.history).toEqual(onGraph.history.map((r, i) => ({ ...r, seconds: resumed.history[i]?.seconds, imagesPerSecond: resumed.history[i]?.imagesPerSecond })));
  }, 600_000);

  it('rejects unknown FER_GRAPH values', async () => {
    await expect(withEnv({ FER_GRAPH: 'maybe' }, () => train(run(path.join(WORK, 'bad-value'))))).rejects.toThrow('Invalid FER_GRAPH value "maybe"');
  });
});
