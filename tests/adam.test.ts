/**
 * GroupedAdamOptimizer, the trainer's Adam, against tfjs's own
 * tf.train.adam: the same fixed gradients applied for several steps to
 * variables of a real model's shapes give the same values bit for bit, and
 * the optimizer state moves between the two (to float rounding). (Whole training steps are not
 * compared bit for bit: oneDNN's multi-threaded backward kernels are not
 * deterministic in the last bits from one run to the next.)
 */
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import { createModel, setTrainableBlocks, trainableVariables } from '../lib/models/factory';
import { GroupedAdamOptimizer } from '../lib/perf/adam';

let shapes: number[][] = [];

/** Fresh variables in `shapes`, seeded, with names unique to `tag`. */
function makeVariables(tag: string): tf.Variable[] {
  return shapes.map((shape, i) => tf.variable(tf.randomUniform(shape, -1, 1, 'float32', 100 + i), true, `adam_test/${tag}/${i}`));
}

/** Gradients for step `step`: seeded (a seed of 0 would mean unseeded to tfjs), with a different scale per variable so the moments differ. */
function gradients(variables: tf.Variable[], step: number): tf.NamedTensorMap {
  return Object.fromEntries(variables.map((v, i) => [v.name, tf.mul(tf.randomNormal(v.shape, 0, 1, 'float32', 1 + 1000 * step + i), 10 ** ((i % 5) - 2))]));
}

function applySteps(optimizer: tf.Optimizer, variables: tf.Variable[], from: number, to: number): void {
  for (let step = from; step < to; step++) {
    tf.tidy(() => optimizer.applyGradients(gradients(variables, step)));
  }
}

/** Largest |a - b| / max(|b|, 1e-3) over all values. */
function maxRelativeDifference(a: tf.Variable[], b: tf.Variable[]): number {
  let max = 0;
  a.forEach((v, i) => {
    const x = v.dataSync();
    const y = (b[i] as tf.Variable).dataSync();
    x.forEach((value, j) => (max = Math.max(max, Math.abs(value - (y[j] as number)) / Math.max(Math.abs(y[j] as number), 1e-3))));
  });
  return max;
}

function countDifferent(a: tf.Variable[], b: tf.Variable[]): number {
  let different = 0;
  a.forEach((v, i) => {
    const x = v.dataSync();
    const y = (b[i] as tf.Variable).dataSync();
    x.forEach((value, j) => (different += value === y[j] ? 0 : 1));
  });
  return different;
}

beforeAll(async () => {
  await initBackend('node');
  const fer = await createModel('MobileNetV2-0.35', { inputSize: 32, weights: 'random', seed: 4 });
  setTrainableBlocks(fer, 'all');
  shapes = trainableVariables(fer).map((v) => [...v.shape]);
  fer.model.dispose();
});

describe('GroupedAdamOptimizer', () => {
  it('updates every variable exactly as tf.train.adam does', () => {
    const initial = makeVariables('initial');
    const reference = makeVariables('reference');
    const grouped = makeVariables('grouped');
    applySteps(tf.train.adam(1e-3), reference, 0, 4);
    applySteps(new GroupedAdamOptimizer(1e-3), grouped, 0, 4);
    expect(shapes.length).toBeGreaterThan(40);
    expect(countDifferent(reference, initial)).toBeGreaterThan(100_000);
    expect(countDifferent(grouped, reference)).toBe(0);
  });

  it('continues from tf.train.adam state, and tf.train.adam from its state', async () => {
    const reference = makeVariables('reference2');
    applySteps(tf.train.adam(1e-3), reference, 0, 4);

    const mixed = makeVariables('mixed');
    const first = tf.train.adam(1e-3);
    applySteps(first, mixed, 0, 2);
    const grouped = new GroupedAdamOptimizer(1e-3);
    await grouped.setWeights(await first.getWeights());
    applySteps(grouped, mixed, 2, 3);
    const last = tf.train.adam(1e-3);
    await last.setWeights(await grouped.getWeights());
    applySteps(last, mixed, 3, 4);
    // Not bit for bit: setWeights recomputes beta^t with pow() where the running optimizer multiplied, as tf.train.adam does.
    expect(maxRelativeDifference(mixed, reference)).toBeLessThan(1e-4);
  });
});
