/**
 * Checks the class activation maps of lib/explain/cam.ts against Keras and
 * on the registered backbones.
 *
 * The reference values come from tests/oracle/keras_cam.py, run with
 * process.env.FER_PYTHON, or .venv/bin/python relative to the repository
 * root, which `npm run setup` creates. It builds a small model with seeded
 * weights, computes Grad-CAM and Grad-CAM++ with tf.GradientTape (and
 * Eigen-CAM and Score-CAM without gradients), and writes its weights as
 * float32 binary + JSON, which the same model built here reads.
 */

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import { CAM_METHODS, createCam, GradCam, type CamMethod, type Explanation } from '../lib/explain/cam';
import { featureMapLayers } from '../lib/explain/graph';
import { apply, batchNorm, conv2d, relu } from '../lib/models/backbones/common';
import { createModel } from '../lib/models/factory';
import { listBackbones } from '../lib/models/registry';
import { registerBuiltins } from '../lib/models/catalog';
import type { ModelConfiguration } from '../lib/models/types';

const REPO_ROOT = path.resolve(__dirname, '..');
const ORACLE_SCRIPT = path.resolve(REPO_ROOT, 'tests/oracle/keras_cam.py');
const TOLERANCE = 1e-4;

interface ReferenceMaps {
  layer: number[][][];
  heatmap: number[][][];
  raw_max: number[];
}

interface Reference {
  tensorflow_version: string;
  keras_version: string;
  size: number;
  images: number;
  classes: number;
  probabilities: number[][];
  logits: number[][];
  predicted: number[];
  targets: { predicted: number[]; explicit: number[] };
  maps: Record<string, ReferenceMaps>;
}

interface WeightManifest {
  layers: Array<{ name: string; weights: Array<{ name: string; shape: number[]; offset: number }> }>;
}

/** Runs the Keras oracle into `dir`. Throws with the fix when Python or TensorFlow is missing. */
function runCamOracle(dir: string): void {
  const configured = process.env.FER_PYTHON ?? '.venv/bin/python';
  // A bare command name is looked up on PATH, and a path is taken relative to the repository root.
  const python = configured.includes('/') ? path.resolve(REPO_ROOT, configured) : configured;
  const result = spawnSync(python, [ORACLE_SCRIPT, dir], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2' },
  });
  if (result.error) {
    throw new Error(
      `Python for the Keras CAM oracle failed to start (${python}: ${result.error.message}). ` +
        'Run `npm run setup` to create .venv with TensorFlow, or set FER_PYTHON to a Python that has it.',
    );
  }
  if (result.status !== 0) {
    throw new Error(`The Keras CAM oracle exited with status ${result.status}. stderr:\n${result.stderr}`);
  }
}

/** Builds the oracle's model layer for layer, with tfjs layers and the backbones' helpers. */
function buildReferenceModel(size: number, classes: number): tf.LayersModel {
  const input = tf.input({ shape: [size, size, 3], name: 'input_image' });
  let x = conv2d(input, { name: 'conv1', filters: 6, kernelSize: 3, padding: 'same' });
  x = batchNorm(x, 'bn1');
  x = relu(x, 'relu1');
  let y = conv2d(x, { name: 'conv2', filters: 8, kernelSize: 3, padding: 'same' });
  y = relu(y, 'relu2');
  const skip = conv2d(x, { name: 'skip', filters: 8, kernelSize: 1 });
  let z = apply(tf.layers.add({ name: 'add' }), [y, skip]);
  z = relu(z, 'relu3');
  z = apply(tf.layers.globalAveragePooling2d({ name: 'pool' }), z);
  z = apply(tf.layers.dense({ name: 'dense1', units: 12, activation: 'relu' }), z);
  const output = apply(tf.layers.dense({ name: 'probabilities', units: classes, activation: 'softmax' }), z);
  return tf.model({ inputs: input, outputs: output, name: 'cam_reference' });
}

function loadReferenceWeights(model: tf.LayersModel, dir: string): void {
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'weights.json'), 'utf8')) as WeightManifest;
  const bytes = fs.readFileSync(path.join(dir, 'weights.bin'));
  const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  for (const layer of manifest.layers) {
    const tensors = layer.weights.map((w) => {
      const size = w.shape.reduce((a, b) => a * b, 1);
      return tf.tensor(data.subarray(w.offset, w.offset + size), w.shape, 'float32');
    });
    model.getLayer(layer.name).setWeights(tensors);
    tensors.forEach((t) => t.dispose());
  }
}

function readInputs(dir: string, reference: Reference): tf.Tensor4D {
  const bytes = fs.readFileSync(path.join(dir, 'inputs.bin'));
  const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  return tf.tensor4d(data, [reference.images, reference.size, reference.size, 3]);
}

function maxAbsDiff(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  expect(actual.length).toBe(expected.length);
  let max = 0;
  for (let i = 0; i < actual.length; i++) {
    max = Math.max(max, Math.abs((actual[i] as number) - (expected[i] as number)));
  }
  return max;
}

beforeAll(async () => {
  await initBackend('node');
  registerBuiltins();
});

describe('CAM against the Keras reference', () => {
  let dir: string;
  let reference: Reference;
  let model: tf.LayersModel;
  let inputs: tf.Tensor4D;
  const differences: string[] = [];

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fer-cam-oracle-'));
    runCamOracle(dir);
    reference = JSON.parse(fs.readFileSync(path.join(dir, 'reference.json'), 'utf8')) as Reference;
    model = buildReferenceModel(reference.size, reference.classes);
    loadReferenceWeights(model, dir);
    inputs = readInputs(dir, reference);
  });

  afterAll(() => {
    inputs?.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
    if (differences.length > 0) {
      console.log(`Max abs differences to Keras ${reference?.keras_version} (TensorFlow ${reference?.tensorflow_version}):\n${differences.join('\n')}`);
    }
  });

  it('probabilities match Keras', () => {
    const probabilities = model.predict(inputs) as tf.Tensor2D;
    const diff = maxAbsDiff(probabilities.dataSync(), reference.probabilities.flat());
    probabilities.dispose();
    differences.push(`probabilities: ${diff.toExponential(2)}`);
    expect(diff).toBeLessThan(1e-6);
  });

  const cases: Array<[string, CamMethod, 'predicted' | 'explicit']> = [];
  for (const layer of ['relu3', 'relu2', 'relu1']) {
    for (const method of CAM_METHODS) {
      for (const mode of ['predicted', 'explicit'] as const) {
        if (method === 'eigencam' && mode === 'explicit') {
          continue;
        }
        cases.push([layer, method, mode]);
      }
    }
  }

  it.each(cases)('%s %s, %s class, matches Keras', async (layer, method, mode) => {
    const expected = reference.maps[`${layer}/${method}/${mode}`] as ReferenceMaps;
    expect(expected).toBeDefined();
    const cam = createCam(method, model, { layer });
    const targetClasses = mode === 'explicit' ? reference.targets.explicit : undefined;
    const explanations = await cam.explain(inputs, targetClasses !== undefined ? { targetClasses } : {});

    expect(explanations.map((e) => e.predictedClass)).toEqual(reference.predicted);
    expect(explanations.map((e) => e.targetClass)).toEqual(reference.targets[mode]);
    expect(explanations.every((e) => e.layerName === layer && e.method === method)).toBe(true);
    const layerDiff = maxAbsDiff(explanations.flatMap((e) => Array.from(e.layerMap)), expected.layer.flat(2));
    const heatDiff = maxAbsDiff(explanations.flatMap((e) => Array.from(e.heatmap)), expected.heatmap.flat(2));
    differences.push(`${layer} ${method} ${mode}: layer map ${layerDiff.toExponential(2)}, heatmap ${heatDiff.toExponential(2)}`);
    expect(layerDiff).toBeLessThanOrEqual(TOLERANCE);
    expect(heatDiff).toBeLessThanOrEqual(TOLERANCE);
    // The unnormalised maxima agree too, zeros (empty maps) included.
    explanations.forEach((e, i) => {
      const rawMax = expected.raw_max[i] as number;
      expect(Math.abs(e.rawMax - rawMax)).toBeLessThanOrEqual(TOLERANCE * Math.max(1, Math.abs(rawMax)));
      expect(e.rawMax > 0).toBe(rawMax > 0);
    });
  });
});

/** Random preprocessed images in [-1, 1], seeded through tf's generator. */
function randomImages(count: number, size: number, seed: number): tf.Tensor4D {
  return tf.randomUniform([count, size, size, 3], -1, 1, 'float32', seed) as tf.Tensor4D;
}

function expectValidMaps(explanations: Explanation[], layerSize: [number, number], inputSize: number): void {
  for (const e of explanations) {
    expect([e.layerHeight, e.layerWidth]).toEqual(layerSize);
    expect(e.layerMap.length).toBe(layerSize[0] * layerSize[1]);
    expect([e.height, e.width]).toEqual([inputSize, inputSize]);
    expect(e.heatmap.length).toBe(inputSize * inputSize);
    expect(e.layerMap.every((v) => Number.isFinite(v) && v >= 0 && v <= 1)).toBe(true);
    expect(e.heatmap.every((v) => Number.isFinite(v) && v >= 0 && v <= 1 + 1e-6)).toBe(true);
    // A non-empty map is scaled so that its maximum is exactly 1.
    expect(Math.max(...e.layerMap)).toBe(e.rawMax > 0 ? 1 : 0);
  }
}

describe('CAM on MobileNet-0.25 with ImageNet weights', () => {
  const inputSize = 96;
  let fer: Awaited<ReturnType<typeof createModel>>;
  let images: tf.Tensor4D;

  beforeAll(async () => {
    fer = await createModel('MobileNet-0.25', { inputSize, seed: 3 });
    images = randomImages(4, inputSize, 11);
  });

  afterAll(() => {
    images?.dispose();
    fer?.model.dispose();
  });

  it('defaults to the registered last conv layer', () => {
    const cam = new GradCam(fer);
    expect(cam.layerName).toBe(fer.backbone.lastConvLayer);
    expect(cam.layerName).toBe('conv_pw_13_relu');
    expect(cam.split.featureShape).toEqual([3, 3, 256]);
  });

  it.each(CAM_METHODS)('%s of a batch equals one image at a time', async (method) => {
    // Score-CAM is bounded to 16 channels to keep the test short; the bound is the same for both runs.
    const cam = createCam(method, fer, method === 'scorecam' ? { maxChannels: 16 } : {});
    const batch = await cam.explain(images);
    expectValidMaps(batch, [3, 3], inputSize);
    expect(batch.every((e) => e.layerName === 'conv_pw_13_relu' && e.method === method)).toBe(true);
    expect(batch.some((e) => e.rawMax > 0)).toBe(true);
    for (let i = 0; i < batch.length; i++) {
      const single = tf.tidy(() => images.slice([i, 0, 0, 0], [1, inputSize, inputSize, 3]));
      const [one] = await cam.explain(single);
      single.dispose();
      const fromBatch = batch[i] as Explanation;
      expect(one?.predictedClass).toBe(fromBatch.predictedClass);
      expect(maxAbsDiff(one?.layerMap ?? [], fromBatch.layerMap)).toBeLessThanOrEqual(1e-5);
      expect(maxAbsDiff(one?.heatmap ?? [], fromBatch.heatmap)).toBeLessThanOrEqual(1e-5);
    }
  });

  it('explains a chosen class', async () => {
    const cam = new GradCam(fer);
    const explanations = await cam.explain(images, { targetClasses: 2 });
    expect(explanations.map((e) => e.targetClass)).toEqual([2, 2, 2, 2]);
    const perImage = await cam.explain(images, { targetClasses: [0, 1, 5, 6] });
    expect(perImage.map((e) => e.targetClass)).toEqual([0, 1, 5, 6]);
    // The class changes the map: Grad-CAM weights come from that class's gradient.
    const other = await cam.explain(images, { targetClasses: 1 });
    const changed = explanations.some((e, i) => maxAbsDiff(e.layerMap, (other[i] as Explanation).layerMap) > 1e-3);
    expect(changed).toBe(true);
  });

  it('explains an earlier layer by name', async () => {
    const cam = new GradCam(fer, { layer: 'conv_pw_11_relu' });
    const explanations = await cam.explain(images);
    expectValidMaps(explanations, [6, 6], inputSize);
    expect(explanations.every((e) => e.layerName === 'conv_pw_11_relu')).toBe(true);
  });

  it('rejects an unknown layer with candidates', () => {
    expect(() => new GradCam(fer, { layer: 'conv_pw_99_relu' })).toThrow(/Layer "conv_pw_99_relu" not found.*conv_pw_13_relu/);
  });

  it('rejects a layer without a 4-D output', () => {
    expect(() => new GradCam(fer, { layer: 'head_dense_1' })).toThrow(/needs a 4-D feature map/);
  });

  it('requires a layer for a plain model', () => {
    expect(() => new GradCam(fer.model)).toThrow(/No target layer given/);
  });

  it('rejects an invalid target class', async () => {
    const cam = new GradCam(fer);
    await expect(cam.explain(images, { targetClasses: 7 })).rejects.toThrow(/Invalid target class 7/);
    await expect(cam.explain(images, { targetClasses: [0, 1] })).rejects.toThrow(/2 target classes for a batch of 4/);
  });

  it('rejects an input of the wrong size', async () => {
    const cam = new GradCam(fer);
    const small = randomImages(1, 64, 1);
    await expect(cam.explain(small)).rejects.toThrow(/64x64 pixels does not fit the model, which takes 96x96/);
    small.dispose();
  });

  it('leaves no tensors behind', async () => {
    const cam = createCam('gradcam++', fer);
    await cam.explain(images);
    const before = tf.memory().numTensors;
    await cam.explain(images);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('CAM on each backbone family', () => {
  registerBuiltins();
  const families = ['MobileNetV2', 'VGG', 'ResNet', 'EfficientNet', 'ConvNeXt'];
  const chosen = families.map((family) => ({
    family,
    backbone: listBackbones().find((b) => b.name.toLowerCase().startsWith(family.toLowerCase())),
  }));
  for (const { family, backbone } of chosen) {
    if (backbone === undefined) {
      // NOTE: skipped until a backbone of this family is registered in lib/models/catalog.ts.
      it.skip(`${family}: no backbone of this family is registered`, () => {});
      continue;
    }
    it(`${backbone.name} gives Grad-CAM maps at ${backbone.lastConvLayer}`, async () => {
      const size = Math.max(backbone.minInputSize, 32);
      const configuration: ModelConfiguration = {
        name: `${backbone.name} CAM smoke test`,
        description: 'a small head for the smoke test',
        backbone: backbone.name,
        dense: [8],
        dropout: 0,
        inputSize: size,
        batchSize: 2,
        phase1: { learningRate: 1e-3, epochs: 1 },
        phase2: { learningRate: 1e-4, epochs: 1, unfreezeBlocks: 0 },
      };
      const fer = await createModel(configuration, { weights: 'random', seed: 1 });
      try {
        const cam = new GradCam(fer);
        expect(cam.layerName).toBe(backbone.lastConvLayer);
        const [h, w] = cam.split.featureShape;
        const images = randomImages(2, size, 5);
        const explanations = await cam.explain(images);
        images.dispose();
        expectValidMaps(explanations, [h, w], size);
        expect(featureMapLayers(fer.model)).toContain(backbone.lastConvLayer);
      } finally {
        fer.model.dispose();
      }
    });
  }
});
