/**
 * Helpers shared by test files: environment overrides, run logs, seeded
 * batch-norm statistics and a relative tensor difference.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import * as tf from '@tensorflow/tfjs';

import { FrozenBatchNormalization } from '../lib/models/layers';
import { Rng } from '../lib/util/rng';

/** Runs `body` with environment variables set, then restores their previous values. */
export async function withEnv<T>(values: Record<string, string>, body: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(values).map((k) => [k, process.env[k]]));
  Object.assign(process.env, values);
  try {
    return await body();
  } finally {
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) {
        delete process.env[key];
      } else {
        process.env[key] = value;
      }
    }
  }
}

/** Reads a training run's log. */
export function trainLog(runDir: string): string {
  return fs.readFileSync(path.join(runDir, 'train.log'), 'utf8');
}

/** Gives every frozen batch-norm layer seeded gamma, beta, mean and variance, the same in every model built alike. */
export function randomiseBatchNorm(model: tf.LayersModel, seed: number): void {
  const rng = new Rng(seed, 0xb0);
  for (const layer of model.layers) {
    if (!(layer instanceof FrozenBatchNormalization)) {
      continue;
    }
    const channels = layer.weights[0]?.shape[0] as number;
    const draw = (low: number, high: number) => tf.tensor1d(Float32Array.from({ length: channels }, () => rng.uniform(low, high)));
    const values = [draw(0.5, 1.5), draw(-0.3, 0.3), draw(-0.3, 0.3), draw(0.5, 1.5)];
    layer.setWeights(values);
    tf.dispose(values);
  }
}

/** Returns max |a - b| / max(max |b|, floor): the largest difference relative to the reference's scale. */
export function relativeDifference(a: tf.Tensor, b: tf.Tensor, floor = 1e-12): number {
  return tf.tidy(() => (tf.max(tf.abs(tf.sub(a, b))).dataSync()[0] as number) / Math.max(floor, tf.max(tf.abs(b)).dataSync()[0] as number));
}
