/**
 * Checks the Keras layers that EfficientNet and ConvNeXt need and tfjs-layers
 * lacks (lib/models/layers.ts): ChannelRescaling, Normalization, LayerScale,
 * ChannelwiseConv2D, and SeededDropout's per-sample noise shape. Each is
 * compared with the formula Keras 3.15 computes and saved and loaded with
 * tf.loadLayersModel. Whole-model agreement with Keras is the fidelity test's job.
 */
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import { ChannelRescaling, ChannelwiseConv2D, LayerScale, Normalization, SeededDropout, seedDropout } from '../lib/models/layers';
import { Rng } from '../lib/util/rng';

const SHAPE: [number, number, number, number] = [2, 5, 5, 3];
const SIZE = SHAPE.reduce((a, b) => a * b, 1);

function randomValues(count: number, seed: number, low: number, high: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: count }, () => rng.uniform(low, high));
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    max = Math.max(max, Math.abs((a[i] as number) - (b[i] as number)));
  }
  return max;
}

/** Output of a single layer on `values` (shape SHAPE unless given). */
function run(layer: tf.layers.Layer, values: Float32Array, shape: number[] = SHAPE, kwargs: Record<string, unknown> = {}): Float32Array {
  return tf.tidy(() => (layer.apply(tf.tensor(values, shape), kwargs) as tf.Tensor).dataSync().slice() as Float32Array);
}

/** Saves a model to memory and loads it back with tf.loadLayersModel. */
async function roundTrip(model: tf.LayersModel): Promise<tf.LayersModel> {
  let artifacts: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (saved) => {
      artifacts = saved;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  return tf.loadLayersModel(tf.io.fromMemory(artifacts as tf.io.ModelArtifacts));
}

const input = randomValues(SIZE, 11, 0, 255);

beforeAll(async () => {
  await initBackend('node');
});

describe('ChannelRescaling', () => {
  it('scales each channel', () => {
    const scale = [0.5, 2, -1];
    const output = run(new ChannelRescaling({ name: 'rescale', scale, offset: [1, 0, -3] }), input);
    const expected = Array.from(input, (x, i) => x * (scale[i % 3] as number) + ([1, 0, -3][i % 3] as number));
    expect(maxAbsDiff(output, expected)).toBeLessThanOrEqual(1e-4);
  });

  it('rejects a scale of the wrong length', () => {
    expect(() => run(new ChannelRescaling({ name: 'bad_rescale', scale: [1, 2] }), input)).toThrow(/scale has 2 values but the input has 3 channels/);
  });

  it('loads as tfjs Rescaling', async () => {
    const inputs = tf.input({ shape: SHAPE.slice(1) });
    const rescale = new ChannelRescaling({ name: 'rescaling_1', scale: [1 / Math.sqrt(0.229), 1 / Math.sqrt(0.224), 1 / Math.sqrt(0.225)] });
    const model = tf.model({ inputs, outputs: rescale.apply(inputs) as tf.SymbolicTensor });
    const loaded = await roundTrip(model);
    expect(loaded.layers[1]?.getClassName()).toBe('Rescaling');
    expect(loaded.layers[1]).not.toBeInstanceOf(ChannelRescaling);
    const batch = tf.tensor4d(input, SHAPE);
    const ours = model.predict(batch) as tf.Tensor;
    const theirs = loaded.predict(batch) as tf.Tensor;
    expect(maxAbsDiff(ours.dataSync(), theirs.dataSync())).toBe(0);
    tf.dispose([batch, ours, theirs]);
  });
});

describe('Normalization', () => {
  const mean = [0.485 * 255, 0.456 * 255, 0.406 * 255];
  const variance = [(0.229 * 255) ** 2, (0.224 * 255) ** 2, (0.225 * 255) ** 2];

  it('standardises with fixed statistics', () => {
    const layer = new Normalization({ name: 'prestem', mean, variance });
    const output = run(layer, input);
    const expected = Array.from(input, (x, i) => (x - (mean[i % 3] as number)) / Math.sqrt(variance[i % 3] as number));
    expect(maxAbsDiff(output, expected)).toBeLessThanOrEqual(1e-5);
    expect(layer.weights).toHaveLength(0);
  });

  it('names weights like Keras', () => {
    const layer = new Normalization({ name: 'normalization' });
    run(layer, input);
    expect(layer.weights.map((w) => w.originalName)).toEqual(['normalization/mean', 'normalization/variance', 'normalization/count']);
    expect(layer.weights.map((w) => w.shape)).toEqual([[3], [3], []]);
    expect(layer.trainableWeights).toHaveLength(0);
  });

  it('starts at Keras defaults', () => {
    const layer = new Normalization({ name: 'identity_normalization' });
    expect(maxAbsDiff(run(layer, input), input)).toBe(0);
  });

  it('starts at given initial values', () => {
    const layer = new Normalization({ name: 'initialised', initialMean: [1, 2, 3], initialVariance: [4, 9, 16] });
    run(layer, input);
    const [meanWeight, varianceWeight] = layer.getWeights();
    expect(Array.from(meanWeight?.dataSync() ?? [])).toEqual([1, 2, 3]);
    expect(Array.from(varianceWeight?.dataSync() ?? [])).toEqual([4, 9, 16]);
  });

  it('reads statistics from weights', () => {
    const layer = new Normalization({ name: 'weighted' });
    run(layer, input);
    layer.setWeights([tf.tensor1d([10, 20, 30]), tf.tensor1d([0.25, 4, 0]), tf.scalar(5, 'int32')]);
    const output = run(layer, input);
    // Keras divides by max(sqrt(variance), 1e-7), so a zero variance does not divide by zero.
    const divisor = [0.5, 2, 1e-7];
    const expected = Array.from(input, (x, i) => (x - [10, 20, 30][i % 3]!) / divisor[i % 3]!);
    const worst = Math.max(...Array.from(output, (value, i) => Math.abs(value - expected[i]!) / Math.max(1, Math.abs(expected[i]!))));
    expect(worst).toBeLessThanOrEqual(1e-6);
  });

  it('rejects mean without variance', () => {
    expect(() => new Normalization({ name: 'half', mean })).toThrow(/set both mean and variance/);
  });

  it('saves and loads by name', async () => {
    const inputs = tf.input({ shape: SHAPE.slice(1) });
    let x = new Normalization({ name: 'fixed', mean, variance }).apply(inputs) as tf.SymbolicTensor;
    const adaptable = new Normalization({ name: 'adaptable' });
    x = adaptable.apply(x) as tf.SymbolicTensor;
    const model = tf.model({ inputs, outputs: x });
    adaptable.setWeights([tf.tensor1d([0.1, -0.2, 0.3]), tf.tensor1d([2, 3, 4]), tf.scalar(9, 'int32')]);
    const loaded = await roundTrip(model);
    expect(loaded.layers.map((l) => l.getClassName())).toEqual(['InputLayer', 'Normalization', 'Normalization']);
    const batch = tf.tensor4d(input, SHAPE);
    const ours = model.predict(batch) as tf.Tensor;
    const theirs = loaded.predict(batch) as tf.Tensor;
    expect(maxAbsDiff(ours.dataSync(), theirs.dataSync())).toBe(0);
    expect(loaded.getLayer('adaptable').getWeights()[2]?.dataSync()[0]).toBe(9);
    tf.dispose([batch, ours, theirs]);
  });
});

describe('LayerScale', () => {
  it('starts at initValues and scales channels', () => {
    const layer = new LayerScale({ name: 'scale', initValues: 1e-6, projectionDim: 3 });
    run(layer, input);
    expect(layer.weights.map((w) => w.originalName)).toEqual(['scale/gamma']);
    expect(Array.from(layer.getWeights()[0]?.dataSync() ?? [])).toEqual(Array.from(Float32Array.from([1e-6, 1e-6, 1e-6])));
    layer.setWeights([tf.tensor1d([0.5, -1, 2])]);
    const expected = Array.from(input, (x, i) => x * [0.5, -1, 2][i % 3]!);
    expect(maxAbsDiff(run(layer, input), expected)).toBeLessThanOrEqual(1e-4);
    expect(layer.trainableWeights).toHaveLength(1);
  });

  it('rejects a mismatched projectionDim', () => {
    expect(() => run(new LayerScale({ name: 'bad_scale', initValues: 1, projectionDim: 4 }), input)).toThrow(/projectionDim is 4 but the input has 3 channels/);
  });
});

describe('ChannelwiseConv2D', () => {
  const CHANNELS = 3;
  const KERNEL = 3;

  /** Direct Keras Conv2D(groups=C) with 'same' padding: out[c] = sum over the window of x[c] * kernel[., ., 0, c] + bias[c]. */
  function reference(x: Float32Array, kernel: Float32Array, bias: number[]): Float32Array {
    const [n, h, w, c] = SHAPE;
    const out = new Float32Array(x.length);
    const pad = Math.floor(KERNEL / 2);
    for (let b = 0; b < n; b++) {
      for (let i = 0; i < h; i++) {
        for (let j = 0; j < w; j++) {
          for (let ch = 0; ch < c; ch++) {
            let sum = bias[ch] as number;
            for (let di = 0; di < KERNEL; di++) {
              for (let dj = 0; dj < KERNEL; dj++) {
                const y = i + di - pad;
                const z = j + dj - pad;
                if (y < 0 || y >= h || z < 0 || z >= w) {
                  continue;
                }
                sum += (x[((b * h + y) * w + z) * c + ch] as number) * (kernel[(di * KERNEL + dj) * c + ch] as number);
              }
            }
            out[((b * h + i) * w + j) * c + ch] = sum;
          }
        }
      }
    }
    return out;
  }

  it('keeps the Keras kernel layout', () => {
    const layer = new ChannelwiseConv2D({ name: 'dw', channels: CHANNELS, kernelSize: KERNEL, padding: 'same' });
    run(layer, input);
    expect(layer.weights.map((w) => [w.originalName, w.shape])).toEqual([
      ['dw/kernel', [KERNEL, KERNEL, 1, CHANNELS]],
      ['dw/bias', [CHANNELS]],
    ]);
  });

  it('equals a grouped convolution', () => {
    const layer = new ChannelwiseConv2D({ name: 'dw_values', channels: CHANNELS, kernelSize: KERNEL, padding: 'same' });
    run(layer, input);
    const kernel = randomValues(KERNEL * KERNEL * CHANNELS, 3, -1, 1);
    const bias = [0.5, -0.25, 2];
    layer.setWeights([tf.tensor4d(kernel, [KERNEL, KERNEL, 1, CHANNELS]), tf.tensor1d(bias)]);
    const scaled = input.map((x) => x / 255);
    expect(maxAbsDiff(run(layer, scaled), reference(scaled, kernel, bias))).toBeLessThanOrEqual(1e-5);
  });

  it('rejects other channel counts', () => {
    expect(() => run(new ChannelwiseConv2D({ name: 'dw_bad', channels: 4, kernelSize: KERNEL }), input)).toThrow(
      /built for 4 channels but the input has 3/,
    );
  });

  it('saves and loads by name', async () => {
    const inputs = tf.input({ shape: SHAPE.slice(1) });
    let x = new ChannelwiseConv2D({ name: 'dw_saved', channels: CHANNELS, kernelSize: KERNEL, padding: 'same' }).apply(inputs) as tf.SymbolicTensor;
    x = new LayerScale({ name: 'scale_saved', initValues: 0.5, projectionDim: CHANNELS }).apply(x) as tf.SymbolicTensor;
    const model = tf.model({ inputs, outputs: x });
    const loaded = await roundTrip(model);
    expect(loaded.layers.map((l) => l.getClassName())).toEqual(['InputLayer', 'ChannelwiseConv2D', 'LayerScale']);
    const batch = tf.tensor4d(input, SHAPE);
    const ours = model.predict(batch) as tf.Tensor;
    const theirs = loaded.predict(batch) as tf.Tensor;
    expect(maxAbsDiff(ours.dataSync(), theirs.dataSync())).toBe(0);
    tf.dispose([batch, ours, theirs]);
  });
});

describe('ConvNeXt layers in training', () => {
  it('fit updates kernel, bias and gamma', async () => {
    const inputs = tf.input({ shape: SHAPE.slice(1) });
    const conv = new ChannelwiseConv2D({ name: 'dw_fit', channels: 3, kernelSize: 3, padding: 'same' });
    const scale = new LayerScale({ name: 'scale_fit', initValues: 0.5, projectionDim: 3 });
    let x = conv.apply(inputs) as tf.SymbolicTensor;
    x = scale.apply(x) as tf.SymbolicTensor;
    x = tf.layers.globalAveragePooling2d({}).apply(x) as tf.SymbolicTensor;
    const model = tf.model({ inputs, outputs: x });
    model.compile({ optimizer: tf.train.sgd(0.1), loss: 'meanSquaredError' });
    const before = model.getWeights().map((w) => Array.from(w.dataSync()));

    const xs = tf.tensor4d(input.map((v) => v / 255), SHAPE);
    const ys = tf.tensor2d([1, -1, 0.5, 0, 2, -2], [2, 3]);
    await model.fit(xs, ys, { epochs: 1, batchSize: 2, verbose: 0 });

    const after = model.getWeights().map((w) => Array.from(w.dataSync()));
    expect(after).toHaveLength(3);
    after.forEach((values, i) => expect(values, `weight ${i}`).not.toEqual(before[i]));
    tf.dispose([xs, ys]);
    model.dispose();
  });
});

describe('SeededDropout noiseShape', () => {
  it('drops whole samples', () => {
    seedDropout(3);
    const layer = new SeededDropout({ name: 'drop', rate: 0.5, noiseShape: [null, 1, 1, 1] });
    const ones = new Float32Array(16 * 2 * 2 * 3).fill(1);
    const output = run(layer, ones, [16, 2, 2, 3], { training: true });
    const perSample = 2 * 2 * 3;
    const samples = Array.from({ length: 16 }, (_, s) => new Set(output.slice(s * perSample, (s + 1) * perSample)));
    for (const values of samples) {
      expect(values.size).toBe(1);
    }
    const kept = samples.filter((values) => values.has(2)).length;
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(16);
  });

  it('passes inputs through at inference', () => {
    const layer = new SeededDropout({ name: 'drop_inference', rate: 0.5, noiseShape: [null, 1, 1, 1] });
    expect(maxAbsDiff(run(layer, input), input)).toBe(0);
  });

  it('reports noiseShape', () => {
    const layer = new SeededDropout({ name: 'drop_config', rate: 0.2, noiseShape: [null, 1, 1, 1] });
    expect(layer.getConfig()['noiseShape']).toEqual([null, 1, 1, 1]);
  });
});
