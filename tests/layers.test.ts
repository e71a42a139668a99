/**
 * Checks the custom layers of lib/models/layers.ts, the fast ReLU gradients
 * of lib/models/fast_ops.ts and the seeded Rng of lib/util/rng.ts. ReLU
 * gradients are compared with TensorFlow itself through
 * tests/oracle/tf_relu_grad.py, run with process.env.FER_PYTHON, or
 * .venv/bin/python relative to the repository root, which `npm run setup`
 * creates.
 */

import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';

import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import { relu, relu6 } from '../lib/models/fast_ops';
import { FastReLU, FrozenBatchNormalization, LastAxisLayerNormalization, layerNormLastAxis, SeededDropout, seedDropout } from '../lib/models/layers';
import { mixSeed, permutation, Rng } from '../lib/util/rng';

const REPO_ROOT = resolve(__dirname, '..');
const ORACLE_SCRIPT = resolve(REPO_ROOT, 'tests/oracle/tf_relu_grad.py');

interface ReluOracle {
  relu: number[];
  relu6: number[];
  relu_grad_kernel: number[];
  relu6_grad_kernel: number[];
  tensorflow_version: string;
}

/** Inputs with the boundaries 0 and 6 exactly, values just beside them, and both signs of zero. */
const GRAD_X = [-3, -1e-6, -0, 0, 1e-6, 0.5, 3, 5.999999, 6, 6.000001, 7, 100];
const GRAD_DY = GRAD_X.map((_, i) => 0.5 + i * 0.25);

/** Runs the TensorFlow oracle. Throws with the fix when Python or TensorFlow is missing. */
function runReluOracle(x: number[], dy: number[]): ReluOracle {
  const configured = process.env.FER_PYTHON ?? '.venv/bin/python';
  // A bare command name is looked up on PATH, and a path is taken relative to the repository root.
  const python = configured.includes('/') ? resolve(REPO_ROOT, configured) : configured;
  const result = spawnSync(python, [ORACLE_SCRIPT], {
    cwd: REPO_ROOT,
    input: JSON.stringify({ x, dy }),
    encoding: 'utf8',
    env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2' },
  });
  if (result.error) {
    throw new Error(
      `Python for the TensorFlow oracle failed to start (${python}: ${result.error.message}). ` +
        'Run `npm run setup` to create .venv with TensorFlow, or set FER_PYTHON to a Python that has it.',
    );
  }
  if (result.status !== 0) {
    throw new Error(
      `The TensorFlow oracle exited with status ${result.status}. If TensorFlow is missing, ` +
        `run \`npm run setup\` or set FER_PYTHON. stderr:\n${result.stderr}`,
    );
  }
  return JSON.parse(result.stdout) as ReluOracle;
}

function gradientOf(f: (x: tf.Tensor) => tf.Tensor, x: number[], dy: number[]): number[] {
  return tf.tidy(() => Array.from(tf.grad(f)(tf.tensor1d(x), tf.tensor1d(dy)).dataSync()));
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    max = Math.max(max, Math.abs((a[i] as number) - (b[i] as number)));
  }
  return max;
}

function randomValues(count: number, seed: number, low: number, high: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: count }, () => rng.uniform(low, high));
}

beforeAll(async () => {
  await initBackend('node');
});

describe('FrozenBatchNormalization', () => {
  const SHAPE: [number, number, number, number] = [2, 3, 3, 4];
  const EPSILON = 1e-3;
  const gamma = [0.5, 1.5, -2, 1];
  const beta = [0.1, -0.2, 0.3, 0];
  const mean = [1, -2, 0.5, 3];
  const variance = [0.25, 4, 1e-4, 9];

  let layer: FrozenBatchNormalization;
  let input: Float32Array;

  beforeAll(() => {
    layer = new FrozenBatchNormalization({ name: 'bn', epsilon: EPSILON });
    tf.dispose(layer.apply(tf.zeros(SHAPE)) as tf.Tensor);
    layer.setWeights([tf.tensor1d(gamma), tf.tensor1d(beta), tf.tensor1d(mean), tf.tensor1d(variance)]);
    input = randomValues(SHAPE.reduce((a, b) => a * b, 1), 1, -5, 5);
  });

  function weights(): number[][] {
    return layer.getWeights().map((w) => Array.from(w.dataSync()));
  }

  function applyLayer(kwargs: Record<string, unknown> = {}): Float32Array {
    return tf.tidy(() => (layer.apply(tf.tensor4d(input, SHAPE), kwargs) as tf.Tensor).dataSync().slice() as Float32Array);
  }

  it('computes the inference formula', () => {
    const output = applyLayer();
    const expected = Array.from(input, (x, i) => {
      const c = i % 4;
      return ((x - mean[c]!) / Math.sqrt(variance[c]! + EPSILON)) * gamma[c]! + beta[c]!;
    });
    // Outputs reach about 300 (gamma -2 over sqrt(1e-4 + 1e-3)), so the 1e-5 bound is relative to max(1, |expected|).
    let worst = 0;
    output.forEach((value, i) => {
      const reference = expected[i] as number;
      worst = Math.max(worst, Math.abs(value - reference) / Math.max(1, Math.abs(reference)));
    });
    expect(worst).toBeLessThanOrEqual(1e-5);
  });

  it('ignores training=true', () => {
    expect(Array.from(applyLayer({ training: true }))).toEqual(Array.from(applyLayer()));
  });

  it('keeps moving stats after training', () => {
    const before = weights();
    applyLayer({ training: true });
    expect(weights()).toEqual(before);
  });

  it('has no trainable weights', () => {
    expect(layer.trainableWeights).toHaveLength(0);
    expect(layer.nonTrainableWeights).toHaveLength(4);
  });

  it('stays frozen with trainable=true', () => {
    const other = new FrozenBatchNormalization({ name: 'bn_unfrozen' });
    tf.dispose(other.apply(tf.zeros(SHAPE)) as tf.Tensor);
    other.trainable = true;
    expect(other.trainableWeights).toHaveLength(0);
  });

  it('names weights like Keras', () => {
    expect(layer.weights.map((w) => w.originalName)).toEqual([
      'bn/gamma',
      'bn/beta',
      'bn/moving_mean',
      'bn/moving_variance',
    ]);
  });

  it("reports class 'BatchNormalization'", () => {
    expect(layer.getClassName()).toBe('BatchNormalization');
  });

  it('reports epsilon and momentum', () => {
    const config = layer.getConfig();
    expect(config['epsilon']).toBe(EPSILON);
    expect(config['momentum']).toBe(0.99);
    expect(config['axis']).toBe(-1);
  });

  it('keeps weights through model.fit', async () => {
    const model = tf.sequential();
    const bn = new FrozenBatchNormalization({ name: 'bn_fit' });
    model.add(tf.layers.inputLayer({ inputShape: [3, 3, 4] }));
    model.add(bn);
    model.add(tf.layers.flatten());
    const dense = tf.layers.dense({ units: 2, kernelInitializer: 'ones' });
    model.add(dense);
    model.compile({ optimizer: tf.train.sgd(0.1), loss: 'meanSquaredError' });
    bn.setWeights([tf.tensor1d(gamma), tf.tensor1d(beta), tf.tensor1d(mean), tf.tensor1d(variance)]);

    const bnBefore = bn.getWeights().map((w) => Array.from(w.dataSync()));
    const denseBefore = Array.from(dense.getWeights()[0]!.dataSync());
    const xs = tf.tensor4d(input, SHAPE);
    const ys = tf.tensor2d([1, 0, 0, 1], [2, 2]);
    await model.fit(xs, ys, { epochs: 2, batchSize: 2, verbose: 0 });

    expect(bn.getWeights().map((w) => Array.from(w.dataSync()))).toEqual(bnBefore);
    expect(Array.from(dense.getWeights()[0]!.dataSync())).not.toEqual(denseBefore);
    tf.dispose([xs, ys]);
    model.dispose();
  });
});

describe('saved model in plain tfjs', () => {
  it('loads as standard layers', async () => {
    const inputs = tf.input({ shape: [3, 3, 4] });
    const bn = new FrozenBatchNormalization({ name: 'bn' });
    let x = bn.apply(inputs) as tf.SymbolicTensor;
    x = new FastReLU({ name: 'relu6', maxValue: 6 }).apply(x) as tf.SymbolicTensor;
    x = new SeededDropout({ name: 'dropout', rate: 0.3 }).apply(x) as tf.SymbolicTensor;
    const model = tf.model({ inputs, outputs: x });
    bn.setWeights([tf.tensor1d([2, 1, 0.5, 3]), tf.tensor1d([1, 0, -1, 2]), tf.tensor1d([0.1, 0.2, 0.3, 0.4]), tf.tensor1d([1, 2, 3, 4])]);

    let artifacts: tf.io.ModelArtifacts | undefined;
    await model.save(
      tf.io.withSaveHandler(async (saved) => {
        artifacts = saved;
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
      }),
    );
    const loaded = await tf.loadLayersModel(tf.io.fromMemory(artifacts!));

    expect(loaded.layers.map((l) => l.getClassName())).toEqual(['InputLayer', 'BatchNormalization', 'ReLU', 'Dropout']);
    const values = randomValues(2 * 3 * 3 * 4, 5, -4, 8);
    const batch = tf.tensor4d(values, [2, 3, 3, 4]);
    const ours = model.predict(batch) as tf.Tensor;
    const theirs = loaded.predict(batch) as tf.Tensor;
    expect(maxAbsDiff(ours.dataSync(), theirs.dataSync())).toBeLessThanOrEqual(1e-5);
    tf.dispose([batch, ours, theirs]);
    model.dispose();
    loaded.dispose();
  });
});

describe('fast ReLU gradients', () => {
  let oracle: ReluOracle;

  beforeAll(() => {
    oracle = runReluOracle(GRAD_X, GRAD_DY);
  }, 120_000);

  it('relu6 forward equals tf.relu6', () => {
    const x = tf.tensor1d(GRAD_X);
    expect(Array.from(relu6(x).dataSync())).toEqual(Array.from(tf.relu6(x).dataSync()));
    x.dispose();
  });

  it('relu forward equals tf.relu', () => {
    const x = tf.tensor1d(GRAD_X);
    expect(Array.from(relu(x).dataSync())).toEqual(Array.from(tf.relu(x).dataSync()));
    x.dispose();
  });

  it('oracle gradient at boundaries', () => {
    // TensorFlow's Relu6Grad is dy * (x > 0 && x < 6), so both boundaries give 0.
    const at = (value: number) => oracle.relu6[GRAD_X.indexOf(value)];
    expect(at(0)).toBe(0);
    expect(at(6)).toBe(0);
    expect(oracle.relu6).toEqual(oracle.relu6_grad_kernel);
  });

  it('relu6 gradient equals TensorFlow', () => {
    expect(tf.getBackend()).toBe('tensorflow');
    expect(gradientOf(relu6, GRAD_X, GRAD_DY)).toEqual(oracle.relu6);
  });

  it('relu6 differs from tfjs-core at 6', () => {
    // tfjs-core 4.22 uses dy * (x <= 6) * step(x), which passes dy at x = 6.
    const fast = gradientOf(relu6, GRAD_X, GRAD_DY);
    const core = gradientOf((x) => tf.relu6(x), GRAD_X, GRAD_DY);
    GRAD_X.forEach((x, i) => {
      const expected = x === 6 ? 0 : core[i];
      expect(fast[i], `x = ${x}`).toBe(expected);
    });
    expect(core[GRAD_X.indexOf(6)]).toBe(GRAD_DY[GRAD_X.indexOf(6)]);
  });

  it('relu gradient equals TensorFlow', () => {
    expect(gradientOf(relu, GRAD_X, GRAD_DY)).toEqual(oracle.relu);
    expect(oracle.relu).toEqual(oracle.relu_grad_kernel);
  });

  it('relu gradient equals tfjs-core', () => {
    expect(gradientOf(relu, GRAD_X, GRAD_DY)).toEqual(gradientOf((x) => tf.relu(x), GRAD_X, GRAD_DY));
  });

  it('relu gradient is 0 at 0', () => {
    expect(gradientOf(relu, [0, -0], [1, 1])).toEqual([0, 0]);
  });

  it('cpu fallback follows tfjs-core', async () => {
    await tf.setBackend('cpu');
    try {
      expect(gradientOf(relu6, GRAD_X, GRAD_DY)).toEqual(gradientOf((x) => tf.relu6(x), GRAD_X, GRAD_DY));
      expect(gradientOf(relu, GRAD_X, GRAD_DY)).toEqual(gradientOf((x) => tf.relu(x), GRAD_X, GRAD_DY));
    } finally {
      await tf.setBackend('tensorflow');
    }
  });
});

describe('FastReLU', () => {
  it("reports class 'ReLU'", () => {
    expect(new FastReLU({ name: 'r' }).getClassName()).toBe('ReLU');
  });

  it('clips at maxValue', () => {
    const x = tf.tensor1d([-2, 0, 1, 3, 4, 10]);
    const plain = new FastReLU({ name: 'plain' }).apply(x) as tf.Tensor;
    const six = new FastReLU({ name: 'six', maxValue: 6 }).apply(x) as tf.Tensor;
    const three = new FastReLU({ name: 'three', maxValue: 3 }).apply(x) as tf.Tensor;
    expect(Array.from(plain.dataSync())).toEqual([0, 0, 1, 3, 4, 10]);
    expect(Array.from(six.dataSync())).toEqual([0, 0, 1, 3, 4, 6]);
    expect(Array.from(three.dataSync())).toEqual([0, 0, 1, 3, 3, 3]);
    tf.dispose([x, plain, six, three]);
  });

  it('writes maxValue to config', () => {
    expect(new FastReLU({ name: 'a', maxValue: 6 }).getConfig()['maxValue']).toBe(6);
    expect(new FastReLU({ name: 'b' }).getConfig()['maxValue']).toBeNull();
  });
});

describe('SeededDropout', () => {
  const ONES: [number, number] = [64, 64];

  function trainingMask(layer: SeededDropout): number[] {
    return tf.tidy(() => Array.from((layer.apply(tf.ones(ONES), { training: true }) as tf.Tensor).dataSync()));
  }

  it('is identity at inference', () => {
    const layer = new SeededDropout({ name: 'd', rate: 0.5 });
    const x = tf.tensor2d(randomValues(64 * 64, 3, -1, 1), ONES);
    const inference = layer.apply(x) as tf.Tensor;
    const explicit = layer.apply(x, { training: false }) as tf.Tensor;
    expect(maxAbsDiff(inference.dataSync(), x.dataSync())).toBe(0);
    expect(maxAbsDiff(explicit.dataSync(), x.dataSync())).toBe(0);
    tf.dispose([x, inference, explicit]);
  });

  it('drops and rescales in training', () => {
    const layer = new SeededDropout({ name: 'd', rate: 0.25 });
    seedDropout(1);
    const mask = trainingMask(layer);
    const keptScale = 1 / (1 - 0.25);
    expect(mask.every((v) => v === 0 || Math.abs(v - keptScale) < 1e-6)).toBe(true);
    const dropped = mask.filter((v) => v === 0).length / mask.length;
    expect(dropped).toBeGreaterThan(0.2);
    expect(dropped).toBeLessThan(0.3);
  });

  it('masks differ between calls', () => {
    const layer = new SeededDropout({ name: 'd', rate: 0.5 });
    seedDropout(2);
    expect(trainingMask(layer)).not.toEqual(trainingMask(layer));
  });

  it('masks repeat after reseeding', () => {
    const layer = new SeededDropout({ name: 'd', rate: 0.5 });
    seedDropout(3, 1, 4);
    const first = [trainingMask(layer), trainingMask(layer)];
    seedDropout(3, 1, 4);
    const second = [trainingMask(layer), trainingMask(layer)];
    expect(second).toEqual(first);
  });

  it('masks differ between streams', () => {
    const layer = new SeededDropout({ name: 'd', rate: 0.5 });
    seedDropout(3, 1, 4);
    const first = trainingMask(layer);
    seedDropout(3, 1, 5);
    expect(trainingMask(layer)).not.toEqual(first);
  });

  it('rate 0 is identity in training', () => {
    const layer = new SeededDropout({ name: 'd', rate: 0 });
    expect(trainingMask(layer).every((v) => v === 1)).toBe(true);
  });

  it('rejects invalid rates', () => {
    for (const rate of [-0.1, 1, 1.5, Number.NaN]) {
      expect(() => new SeededDropout({ name: 'drop', rate }), String(rate)).toThrow(
        `drop: invalid dropout rate ${rate}; expected 0 <= rate < 1.`,
      );
    }
  });

  it("reports class 'Dropout'", () => {
    const layer = new SeededDropout({ name: 'd', rate: 0.2 });
    expect(layer.getClassName()).toBe('Dropout');
    expect(layer.getConfig()['rate']).toBe(0.2);
  });
});

describe('Rng', () => {
  function draws(rng: Rng, count: number): number[] {
    return Array.from({ length: count }, () => rng.nextUint32());
  }

  it('repeats for the same seed', () => {
    expect(draws(new Rng(42, 1, 2), 100)).toEqual(draws(new Rng(42, 1, 2), 100));
  });

  it('differs between seeds', () => {
    expect(draws(new Rng(42), 20)).not.toEqual(draws(new Rng(43), 20));
  });

  it('differs between streams', () => {
    expect(draws(new Rng(42, 1), 20)).not.toEqual(draws(new Rng(42, 2), 20));
  });

  it('mixSeed is deterministic', () => {
    expect(mixSeed(1, 2, 3)).toBe(mixSeed(1, 2, 3));
    expect(mixSeed(1, 2, 3)).not.toBe(mixSeed(1, 3, 2));
  });

  it('next stays in [0, 1)', () => {
    const rng = new Rng(7);
    const values = Array.from({ length: 10_000 }, () => rng.next());
    expect(Math.min(...values)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...values)).toBeLessThan(1);
  });

  it('next has mean near 0.5', () => {
    const rng = new Rng(8);
    const values = Array.from({ length: 20_000 }, () => rng.next());
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    // The standard error of the mean is 1 / sqrt(12 * 20000), about 0.002.
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.01);
  });

  it('uniform stays in [low, high)', () => {
    const rng = new Rng(9);
    const values = Array.from({ length: 10_000 }, () => rng.uniform(-20, 20));
    expect(Math.min(...values)).toBeGreaterThanOrEqual(-20);
    expect(Math.max(...values)).toBeLessThan(20);
    expect(Math.min(...values)).toBeLessThan(-19);
    expect(Math.max(...values)).toBeGreaterThan(19);
  });

  it('int covers [0, n)', () => {
    const rng = new Rng(10);
    const counts = new Array<number>(7).fill(0);
    for (let i = 0; i < 7000; i++) {
      const value = rng.int(7);
      expect(Number.isInteger(value), String(value)).toBe(true);
      expect(value, String(value)).toBeGreaterThanOrEqual(0);
      expect(value, String(value)).toBeLessThan(7);
      counts[value]!++;
    }
    for (const [value, count] of counts.entries()) {
      expect(count, `value ${value}`).toBeGreaterThan(850);
      expect(count, `value ${value}`).toBeLessThan(1150);
    }
  });

  it('shuffle is a permutation', () => {
    const items = Array.from({ length: 100 }, (_, i) => i);
    const shuffled = new Rng(11).shuffle([...items]);
    expect([...shuffled].sort((a, b) => a - b)).toEqual(items);
    expect(shuffled).not.toEqual(items);
  });

  it('shuffle works in place', () => {
    const items = [1, 2, 3, 4, 5];
    expect(new Rng(12).shuffle(items)).toBe(items);
  });

  it('shuffle handles tiny arrays', () => {
    expect(new Rng(13).shuffle([])).toEqual([]);
    expect(new Rng(13).shuffle(['a'])).toEqual(['a']);
  });

  it('permutation is seeded', () => {
    const first = permutation(50, 5, 1);
    expect([...first].sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(permutation(50, 5, 1)).toEqual(first);
    expect(permutation(50, 5, 2)).not.toEqual(first);
  });
});

describe('LastAxisLayerNormalization', () => {
  const shape = [2, 3, 5, 8];
  const gammaValues = randomValues(8, 31, 0.5, 1.5);
  const betaValues = randomValues(8, 32, -0.5, 0.5);

  /** Computes the same normalization from plain tfjs ops, which tfjs differentiates itself. */
  function reference(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor): tf.Tensor {
    const { mean, variance } = tf.moments(x, -1, true);
    return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, 1e-6))), gamma), beta);
  }

  it('matches tfjs-layers LayerNormalization', () => {
    const inputs = tf.input({ shape: shape.slice(1) });
    const ours = new LastAxisLayerNormalization({ name: 'ln_ours', epsilon: 1e-6 });
    const theirs = tf.layers.layerNormalization({ name: 'ln_tfjs', epsilon: 1e-6 });
    const a = tf.model({ inputs, outputs: ours.apply(inputs) as tf.SymbolicTensor });
    const b = tf.model({ inputs, outputs: theirs.apply(inputs) as tf.SymbolicTensor });
    for (const layer of [ours, theirs]) {
      layer.setWeights([tf.tensor1d(gammaValues), tf.tensor1d(betaValues)]);
    }
    expect(ours.getClassName()).toBe('LayerNormalization');
    expect(ours.weights.map((w) => w.originalName.split('/').pop())).toEqual(theirs.weights.map((w) => w.originalName.split('/').pop()));
    const x = tf.tensor4d(randomValues(2 * 3 * 5 * 8, 33, -3, 5), shape as [number, number, number, number]);
    expect(maxAbsDiff((a.predict(x) as tf.Tensor).dataSync(), (b.predict(x) as tf.Tensor).dataSync())).toBeLessThanOrEqual(1e-5);
  });

  it('has the gradients of the plain formula', () => {
    const x = tf.tensor4d(randomValues(2 * 3 * 5 * 8, 34, -3, 5), shape as [number, number, number, number]);
    const gamma = tf.tensor1d(gammaValues);
    const beta = tf.tensor1d(betaValues);
    // A weighted sum, so that the upstream gradient differs per element.
    const weights = tf.tensor4d(randomValues(2 * 3 * 5 * 8, 35, -1, 1), shape as [number, number, number, number]);
    const loss = (f: (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.Tensor) => (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(f(a, g, b), weights));
    const ours = tf.grads(loss((a, g, b) => layerNormLastAxis(a, g, b, 1e-6)))([x, gamma, beta]);
    const expected = tf.grads(loss(reference))([x, gamma, beta]);
    ours.forEach((gradient, i) => {
      const other = expected[i] as tf.Tensor;
      expect(gradient.shape).toEqual(other.shape);
      expect(maxAbsDiff(gradient.dataSync(), other.dataSync()) / Math.max(...Array.from(other.dataSync(), Math.abs))).toBeLessThan(1e-5);
    });
  });
});
