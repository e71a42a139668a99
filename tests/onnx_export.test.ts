/**
 * ONNX export against TensorFlow.js: for one backbone of each registered
 * family, the exported graph run by ONNX Runtime gives the same class
 * probabilities (within 1e-4) and backbone features as the tfjs model.
 * Batch-norm statistics, scales and offsets are randomised first, because
 * freshly initialised ones (mean 0, variance 1) would hide a wrong folding.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import { pixelsToTensor, preprocess } from '../lib/data/preprocess';
import { createModel, HEAD_LAYER_PREFIX, type FerModel } from '../lib/models/factory';
import type { PreprocessingMode } from '../lib/models/types';
import { nextDropoutMultiplier, SeededDropout, seedDropout } from '../lib/models/layers';
import { exportOnnx, exportOnnxGraph, UnsupportedLayerError } from '../lib/onnx/export';
import { ensureOnnxFile, OnnxModel, onnxRuntime } from '../lib/onnx/runtime';
import { FaceClassifier, preprocessPixels, RUN_ONNX_FILE } from '../lib/predict/classify';
import type { LoadedRun } from '../lib/train/load_run';
import type { ResolvedTrainOptions } from '../lib/train/options';
import { Rng } from '../lib/util/rng';

const WORK = fs.mkdtempSync(path.join(os.tmpdir(), 'fer-onnx-test-'));

/** One backbone per family, at small sizes that still give odd feature-map sizes (asymmetric 'same' padding). */
const FAMILIES: Array<{ backbone: string; size: number }> = [
  { backbone: 'MobileNet-0.25', size: 40 },
  { backbone: 'MobileNetV2-0.35', size: 48 },
  { backbone: 'VGG16', size: 32 },
  { backbone: 'ResNet50V2', size: 32 },
  { backbone: 'EfficientNetB0', size: 48 },
  { backbone: 'ConvNeXtTiny', size: 32 },
];

/** Overwrites batch-norm statistics, layer scales and normalisation weights with seeded random values. */
function randomiseFrozenWeights(model: tf.LayersModel, seed: number): void {
  const rng = new Rng(seed, 0x0440);
  const ranges: Record<string, [number, number]> = {
    gamma: [0.5, 1.5],
    beta: [-0.5, 0.5],
    moving_mean: [-0.5, 0.5],
    moving_variance: [0.5, 1.5],
  };
  for (const layer of model.layers) {
    const className = layer.getClassName();
    if (className !== 'BatchNormalization' && className !== 'LayerScale' && className !== 'LayerNormalization') {
      continue;
    }
    const values = layer.weights.map((weight) => {
      const short = (weight.originalName.split('/').pop() as string).replace(/_\d+$/, '');
      // LayerScale's gamma multiplies a residual branch; values near 1 would let 18 ConvNeXt blocks grow without bound.
      const [low, high] = className === 'LayerScale' ? [0.05, 0.3] : (ranges[short] ?? [0.5, 1.5]);
      const shape = weight.read().shape;
      const size = shape.reduce((a, b) => a * b, 1);
      return tf.tensor(Float32Array.from({ length: size }, () => rng.uniform(low, high)), shape);
    });
    layer.setWeights(values);
    values.forEach((v) => v.dispose());
  }
}

/** Draws a batch in the value range that the backbone's preprocessing produces. */
function sampleInput(fer: FerModel, batch: number, seed: number): tf.Tensor4D {
  const [low, high] = fer.backbone.preprocessing === 'none' ? [0, 255] : [-1, 1];
  return tf.randomUniform([batch, fer.inputSize, fer.inputSize, 3], low, high, 'float32', seed) as tf.Tensor4D;
}

function maxAbsDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    max = Math.max(max, Math.abs((a[i] as number) - (b[i] as number)));
  }
  return max;
}

function maxAbs(a: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    max = Math.max(max, Math.abs(a[i] as number));
  }
  return max;
}

async function runOnnx(model: tf.LayersModel, x: tf.Tensor4D): Promise<Float32Array> {
  const session = await OnnxModel.create(exportOnnx(model));
  try {
    return await session.run(x.dataSync() as Float32Array, x.shape);
  } finally {
    await session.dispose();
  }
}

beforeAll(async () => {
  await initBackend('node');
  if (onnxRuntime() === undefined) {
    throw new Error('onnxruntime-node does not load; install it with "npm install --ignore-scripts onnxruntime-node".');
  }
});

afterAll(() => {
  fs.rmSync(WORK, { recursive: true, force: true });
});

describe.each(FAMILIES)('ONNX export of $backbone at $size px', ({ backbone, size }) => {
  let fer: FerModel;
  let x: tf.Tensor4D;

  beforeAll(async () => {
    fer = await createModel(backbone, { inputSize: size, weights: 'random', seed: 3 });
    randomiseFrozenWeights(fer.model, 11);
    x = sampleInput(fer, 3, 5);
  }, 300_000);

  afterAll(() => {
    x.dispose();
    fer.model.dispose();
  });

  it('matches tfjs probabilities within 1e-4', async () => {
    const expected = (fer.model.predict(x) as tf.Tensor).dataSync();
    const actual = await runOnnx(fer.model, x);
    expect(actual.length).toBe(expected.length);
    expect(maxAbsDifference(actual, expected)).toBeLessThan(1e-4);
  });

  it('matches tfjs backbone features', async () => {
    const pool = fer.model.getLayer(`${HEAD_LAYER_PREFIX}pool`);
    const features = tf.model({ inputs: fer.model.inputs, outputs: pool.output as tf.SymbolicTensor });
    const expected = (features.predict(x) as tf.Tensor).dataSync();
    const actual = await runOnnx(features, x);
    expect(actual.length).toBe(expected.length);
    // Relative to the largest feature: deep random-weight stacks reach values in the hundreds.
    expect(maxAbsDifference(actual, expected) / Math.max(1, maxAbs(expected))).toBeLessThan(1e-4);
  });

  it('runs a batch of one', async () => {
    const one = tf.slice(x, [1, 0, 0, 0], [1, size, size, 3]);
    const expected = (fer.model.predict(one) as tf.Tensor).dataSync();
    const actual = await runOnnx(fer.model, one);
    one.dispose();
    expect(maxAbsDifference(actual, expected)).toBeLessThan(1e-4);
  });
});

describe('ONNX export errors and files', () => {
  it('names an unsupported layer class', () => {
    const input = tf.input({ shape: [8, 8, 3] });
    const upsampled = tf.layers.upSampling2d({ name: 'upsample', size: [2, 2] }).apply(input) as tf.SymbolicTensor;
    const model = tf.model({ inputs: input, outputs: upsampled });
    expect(() => exportOnnx(model)).toThrow(UnsupportedLayerError);
    expect(() => exportOnnx(model)).toThrow(/layer "upsample" of class UpSampling2D/);
  });

  it('keeps input and output names', async () => {
    const fer = await createModel('MobileNet-0.25', { inputSize: 32, weights: 'random' });
    const session = await OnnxModel.create(exportOnnx(fer.model));
    expect(session.inputName).toBe('input_image');
    expect(session.outputName).toBe('emotion_probabilities');
    await session.dispose();
  });

  it('re-exports when the source is newer', async () => {
    const fer = await createModel('MobileNet-0.25', { inputSize: 32, weights: 'random' });
    const source = path.join(WORK, 'weights.bin');
    const file = path.join(WORK, 'model.onnx');
    fs.writeFileSync(source, 'old weights');
    await ensureOnnxFile(fer.model, file, source);
    const firstWrite = fs.statSync(file).mtimeMs;
    expect(firstWrite).toBeGreaterThan(0);

    await ensureOnnxFile(fer.model, file, source);
    expect(fs.statSync(file).mtimeMs).toBe(firstWrite);

    const later = new Date(firstWrite + 5000);
    fs.utimesSync(source, later, later);
    await ensureOnnxFile(fer.model, file, source);
    expect(fs.statSync(file).mtimeMs).toBeGreaterThan(firstWrite);
  });
});

describe('ONNX export of a zero-padded max pooling', () => {
  it('keeps the padded zeros in windows of negative values', async () => {
    // ONNX Runtime 1.31 folds a zero Pad into MaxPool as -infinity padding; the export must not let it.
    const input = tf.input({ shape: [6, 6, 2] });
    const padded = tf.layers.zeroPadding2d({ name: 'pad', padding: [[1, 1], [1, 1]] }).apply(input) as tf.SymbolicTensor;
    const pooled = tf.layers.maxPooling2d({ name: 'pool', poolSize: 3, strides: 2 }).apply(padded) as tf.SymbolicTensor;
    const model = tf.model({ inputs: input, outputs: pooled });
    const x = tf.randomUniform([2, 6, 6, 2], -2, -1, 'float32', 8) as tf.Tensor4D;
    const expected = (model.predict(x) as tf.Tensor).dataSync();
    const actual = await runOnnx(model, x);
    expect(Array.from(expected)).toContain(0);
    expect(maxAbsDifference(actual, expected)).toBe(0);
  });
});

describe('FaceClassifier on ONNX Runtime', () => {
  let run: LoadedRun;

  beforeAll(async () => {
    const fer = await createModel('MobileNet-0.25', { inputSize: 32, weights: 'random', seed: 9 });
    randomiseFrozenWeights(fer.model, 2);
    run = { runDir: path.join(WORK, 'run'), options: { resizeFit: 'fill' } as ResolvedTrainOptions, fer };
  });

  it('exports the run model on first use', async () => {
    const classifier = new FaceClassifier(run);
    expect(await classifier.selectEngine('onnx')).toBe('onnx');
    expect(classifier.engine).toBe('onnx');
    expect(fs.existsSync(path.join(run.runDir, 'model', RUN_ONNX_FILE))).toBe(true);
    await classifier.dispose();
  });

  it('gives the probabilities of tfjs', async () => {
    const tfjs = new FaceClassifier(run);
    expect(await tfjs.selectEngine('tfjs')).toBe('tfjs');
    const onnxClassifier = new FaceClassifier(run);
    await onnxClassifier.selectEngine('auto');
    expect(onnxClassifier.engine).toBe('onnx');
    const rng = new Rng(4);
    const pixels = Uint8Array.from({ length: 4 * 32 * 32 * 3 }, () => rng.int(256));
    const expected = await tfjs.predictPixels(pixels, 4);
    const actual = await onnxClassifier.predictPixels(pixels, 4);
    expect(actual).toHaveLength(4);
    actual.forEach((row, i) => expect(maxAbsDifference(row, expected[i] as Float32Array)).toBeLessThan(1e-4));
    await onnxClassifier.dispose();
  });

  it.each(['tf', 'caffe', 'torch', 'none'] as PreprocessingMode[])('preprocesses pixels in %s mode like tfjs', (mode) => {
    const rng = new Rng(6);
    const pixels = Uint8Array.from({ length: 2 * 4 * 4 * 3 }, () => rng.int(256));
    const expected = tf.tidy(() => preprocess(pixelsToTensor(pixels, 2, 4), mode).dataSync());
    // Values reach 255, where one float32 step is 1.5e-5.
    expect(maxAbsDifference(preprocessPixels(pixels, mode), expected)).toBeLessThan(1e-4);
  });
});

describe('ONNX export with dropout masks', () => {
  let fer: FerModel;
  let features: tf.LayersModel;
  let x: tf.Tensor4D;

  beforeAll(async () => {
    fer = await createModel('EfficientNetB0', { inputSize: 48, weights: 'random', seed: 3 });
    randomiseFrozenWeights(fer.model, 11);
    const pool = fer.model.getLayer(`${HEAD_LAYER_PREFIX}pool`);
    features = tf.model({ inputs: fer.model.inputs, outputs: pool.output as tf.SymbolicTensor });
    x = sampleInput(fer, 4, 9);
  }, 300_000);

  afterAll(() => {
    x.dispose();
    fer.model.dispose();
  });

  it('adds one mask per dropout layer', () => {
    const { masks } = exportOnnxGraph(features, { dropoutMasks: true });
    const expected = features.layers.filter((l) => l instanceof SeededDropout && l.rate > 0).map((l) => l.name);
    expect(expected.length).toBeGreaterThan(5);
    expect(masks.map((m) => m.layerName)).toEqual(expected);
    expect(masks.every((m) => m.shape.length === 4 && m.shape[0] === null && m.shape.slice(1).every((d) => d === 1))).toBe(true);
    expect(exportOnnxGraph(features).masks).toEqual([]);
  });

  it('reproduces the training-mode forward pass of tfjs with the same seeds', async () => {
    seedDropout(21, 1, 2, 3);
    const expected = (features.apply(x, { training: true }) as tf.Tensor).dataSync();
    const inference = (features.predict(x) as tf.Tensor).dataSync();

    const { bytes, masks } = exportOnnxGraph(features, { dropoutMasks: true });
    seedDropout(21, 1, 2, 3);
    const extra: Record<string, { data: Float32Array; shape: number[] }> = {};
    let dropped = 0;
    for (const mask of masks) {
      const multiplier = nextDropoutMultiplier(mask.rate, [4, 1, 1, 1]);
      const values = multiplier.dataSync() as Float32Array;
      dropped += values.filter((v) => v === 0).length;
      extra[mask.name] = { data: Float32Array.from(values), shape: multiplier.shape };
      multiplier.dispose();
    }
    const session = await OnnxModel.create(bytes, { extraInputs: true });
    const actual = await session.run(x.dataSync() as Float32Array, x.shape, extra);
    await session.dispose();

    // Some samples were dropped in some blocks, so the masks matter: the training pass differs from inference.
    expect(dropped).toBeGreaterThan(0);
    expect(maxAbsDifference(expected, inference) / maxAbs(expected)).toBeGreaterThan(1e-3);
    expect(maxAbsDifference(actual, expected) / Math.max(1, maxAbs(expected))).toBeLessThan(1e-4);
  });
});
