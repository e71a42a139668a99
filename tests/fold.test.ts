/**
 * Frozen batch-norm folding (lib/models/fold.ts): a model with the folding
 * against the same model without it, same seeded weights and randomised
 * batch-norm statistics. Training-mode outputs and the gradients of every
 * trainable variable must agree to float rounding, and inference-mode calls
 * must be untouched.
 */
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import { createModel, setTrainableBlocks, trainableVariables, type FerModel } from '../lib/models/factory';
import { FrozenBatchNormalization, seedDropout } from '../lib/models/layers';
import { randomiseBatchNorm, relativeDifference } from './support';

const CASES = [
  { backbone: 'MobileNetV2-0.35', size: 32 },
  { backbone: 'EfficientNetB0', size: 32 },
  { backbone: 'ResNet50V2', size: 32 },
];

beforeAll(async () => {
  await initBackend('node');
});

describe.each(CASES)('folded batch norm in $backbone', ({ backbone, size }) => {
  let folded: FerModel;
  let plain: FerModel;
  let x: tf.Tensor4D;

  beforeAll(async () => {
    folded = await createModel(backbone, { inputSize: size, weights: 'random', seed: 2 });
    plain = await createModel(backbone, { inputSize: size, weights: 'random', seed: 2, foldBatchNorm: false });
    randomiseBatchNorm(folded.model, 9);
    randomiseBatchNorm(plain.model, 9);
    setTrainableBlocks(folded, 'all');
    setTrainableBlocks(plain, 'all');
    x = tf.randomUniform([4, size, size, 3], -1, 1, 'float32', 3) as tf.Tensor4D;
  }, 300_000);

  it('folds most of its batch-norm layers', () => {
    const frozen = folded.model.layers.filter((l) => l instanceof FrozenBatchNormalization) as FrozenBatchNormalization[];
    const count = frozen.filter((l) => l.foldedInto !== undefined).length;
    console.log(`${backbone}: ${count} of ${frozen.length} batch-norm layers folded`);
    expect(count).toBeGreaterThan(frozen.length / 2);
    expect(plain.model.layers.some((l) => l instanceof FrozenBatchNormalization && l.foldedInto !== undefined)).toBe(false);
  });

  it('gives the same training-mode output', () => {
    seedDropout(4, 1);
    const a = folded.model.apply(x, { training: true }) as tf.Tensor;
    seedDropout(4, 1);
    const b = plain.model.apply(x, { training: true }) as tf.Tensor;
    expect(relativeDifference(a, b, 1e-6)).toBeLessThan(1e-4);
    tf.dispose([a, b]);
  });

  it('leaves inference untouched', () => {
    const a = folded.model.predict(x) as tf.Tensor;
    const b = plain.model.predict(x) as tf.Tensor;
    expect(tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]).toBe(0);
    tf.dispose([a, b]);
  });

  it('gives the same gradients for every trainable variable', () => {
    const labels = tf.oneHot(tf.tensor1d([0, 1, 2, 3], 'int32'), 7).toFloat();
    const gradients = (fer: FerModel) => {
      seedDropout(4, 2);
      const variables = trainableVariables(fer);
      const { grads } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(labels, fer.model.apply(x, { training: true }) as tf.Tensor) as tf.Scalar, variables);
      return variables.map((v) => grads[v.name] as tf.Tensor);
    };
    const a = gradients(folded);
    const b = gradients(plain);
    expect(a.length).toBe(b.length);
    expect(a.length).toBeGreaterThan(20);
    // Relative to the largest entry of each gradient; near-zero gradients of deep random stacks are compared loosely.
    const worst = Math.max(...a.map((g, i) => relativeDifference(g, b[i] as tf.Tensor, 1e-6)));
    expect(worst).toBeLessThan(1e-3);
    tf.dispose([...a, ...b, labels]);
  });
});
