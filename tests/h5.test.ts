/**
 * The Keras weight reader on small files that tests/oracle/h5_layouts.py
 * writes with h5py in each layout Keras uses, plus the errors for files that
 * are missing, not HDF5 or not Keras weights. Full-size Keras 3 files are
 * covered by tests/fidelity.test.ts.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import { detectKerasWeightsLayout, legacyWeightKey, readKerasWeights, toSnakeCase } from '../lib/models/h5';
import { assignKerasWeights } from '../lib/models/keras_weights';
import { LayerScale } from '../lib/models/layers';
import { disposeWeights, type WeightMap } from '../lib/models/weights';

const REPO_ROOT = path.resolve(__dirname, '..');
const ORACLE_SCRIPT = path.join(REPO_ROOT, 'tests', 'oracle', 'h5_layouts.py');

let dir = '';
let expected: Record<string, number[]> = {};

function file(name: string): string {
  return path.join(dir, name);
}

function writeFiles(out: string): void {
  const configured = process.env.FER_PYTHON ?? '.venv/bin/python';
  const python = configured.includes('/') ? path.resolve(REPO_ROOT, configured) : configured;
  const result = spawnSync(python, [ORACLE_SCRIPT, out], { cwd: REPO_ROOT, encoding: 'utf8' });
  if (result.error) {
    throw new Error(
      `Python for the HDF5 test files failed to start (${python}: ${result.error.message}). ` +
        'Run `npm run setup` to create .venv with h5py, or set FER_PYTHON to a Python that has it.',
    );
  }
  if (result.status !== 0) {
    throw new Error(`${ORACLE_SCRIPT} exited with status ${result.status}. stderr:\n${result.stderr}`);
  }
}

async function read(name: string): Promise<WeightMap> {
  return readKerasWeights(file(name));
}

function values(weights: WeightMap, key: string): number[] {
  const tensor = weights.get(key);
  expect(tensor, `${key} in ${[...weights.keys()].join(', ')}`).toBeDefined();
  return Array.from((tensor as tf.Tensor).dataSync());
}

beforeAll(async () => {
  await initBackend('node');
  dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'fer-h5-'));
  writeFiles(dir);
  expected = JSON.parse(fs.readFileSync(file('values.json'), 'utf8')) as Record<string, number[]>;
});

afterAll(async () => {
  if (dir !== '') {
    await fs.promises.rm(dir, { recursive: true, force: true });
  }
});

describe('legacy layout', () => {
  it('reads Keras 2 and Keras 1 weight names', async () => {
    const weights = await read('keras2.h5');
    expect([...weights.keys()].sort()).toEqual(Object.keys(expected).sort());
    for (const [key, stored] of Object.entries(expected)) {
      const actual = values(weights, key);
      expect(actual.length, key).toBe(stored.length);
      expect(Math.max(...actual.map((v, i) => Math.abs(v - (stored[i] as number)))), key).toBeLessThan(1e-7);
    }
    expect(weights.get('conv/kernel')?.shape).toEqual([3, 3, 3, 4]);
    disposeWeights(weights);
  });

  it('joins a layer_names attribute split in chunks', async () => {
    const weights = await read('chunked.h5');
    expect([...weights.keys()]).toEqual(['first/kernel', 'second/kernel']);
    disposeWeights(weights);
  });

  it('reads the model_weights group of a full-model file', async () => {
    expect(await detectKerasWeightsLayout(file('full_model.h5'))).toBe('legacy-h5');
    const weights = await read('full_model.h5');
    expect([...weights.keys()].sort()).toEqual(['dense/bias', 'dense/kernel']);
    expect(weights.get('dense/bias')?.dtype).toBe('float32');
    expect(values(weights, 'dense/kernel')).toEqual([0.5, 0.5, 0.5, 0.5, 0.5, 0.5]);
    disposeWeights(weights);
  });

  it.each([
    ['conv1', 'conv1/kernel:0', 'conv1/kernel'],
    ['vgg16', 'block1_conv1/kernel:0', 'block1_conv1/kernel'],
    ['model', 'model/conv1/bias:0', 'conv1/bias'],
    ['conv1', 'conv1/kernel_1:0', 'conv1/kernel'],
    ['block1_conv1', 'block1_conv1_W_1:0', 'block1_conv1/kernel'],
    ['bn_conv1', 'bn_conv1_running_std:0', 'bn_conv1/moving_variance'],
    ['custom', 'custom/scale:0', 'custom/scale'],
    ['custom', 'scale', 'custom/scale'],
  ])('maps %s weight %s to %s', (layer, stored, key) => {
    expect(legacyWeightKey(layer, stored)).toBe(key);
  });
});

describe('Keras 3 layout', () => {
  it('names variables by layer class', async () => {
    expect(await detectKerasWeightsLayout(file('keras3_depthwise.weights.h5'))).toBe('keras3-h5');
    const weights = await read('keras3_depthwise.weights.h5');
    expect([...weights.keys()].sort()).toEqual([
      'conv_dw_1/depthwise_kernel',
      'logits/bias',
      'logits/kernel',
      'normalization/count',
      'normalization/mean',
      'normalization/variance',
    ]);
    expect(values(weights, 'logits/bias')).toEqual([-1, -1, -1]);
    expect(weights.get('normalization/count')?.dtype).toBe('int32');
    expect(values(weights, 'normalization/count')).toEqual([12]);
    disposeWeights(weights);
  });

  it('rejects an unknown layer class', async () => {
    await expect(read('keras3_unknown.weights.h5')).rejects.toThrow(/unknown Keras class "my_custom_layer".*KERAS3_WEIGHT_NAMES/);
  });

  it('rejects variables without a layer name', async () => {
    await expect(read('keras3_unnamed.weights.h5')).rejects.toThrow(/layers\/conv2d\/vars has no "name" attribute/);
  });

  it.each([
    ['Conv2D', 'conv2d'],
    ['DepthwiseConv2D', 'depthwise_conv2d'],
    ['BatchNormalization', 'batch_normalization'],
    ['ZeroPadding2D', 'zero_padding2d'],
    ['LayerScale', 'layer_scale'],
  ])('snake-cases %s as %s', (className, snake) => {
    expect(toSnakeCase(className)).toBe(snake);
  });
});

describe('weight aliases', () => {
  it('loads a Keras 3 depthwise "kernel" into tfjs', () => {
    const input = tf.input({ shape: [5, 5, 4] });
    const layer = tf.layers.depthwiseConv2d({ name: 'conv_dw_1', kernelSize: 3, useBias: false });
    const model = tf.model({ inputs: input, outputs: layer.apply(input) as tf.SymbolicTensor });
    const weights: WeightMap = new Map([['conv_dw_1/kernel', tf.fill([3, 3, 4, 1], 2)]]);
    const report = assignKerasWeights(model, weights, { requireAll: true });
    expect(report.assigned).toEqual(['conv_dw_1/depthwise_kernel']);
    expect(report.unused).toEqual([]);
    expect(Array.from(layer.getWeights()[0]?.dataSync() ?? [])).toEqual(new Array(36).fill(2));
    disposeWeights(weights);
    model.dispose();
  });

  it('loads an unnamed LayerScale variable as gamma', () => {
    const input = tf.input({ shape: [2, 2, 4] });
    const layer = new LayerScale({ name: 'stage_0_block_0_layer_scale', initValues: 1e-6, projectionDim: 4 });
    const model = tf.model({ inputs: input, outputs: layer.apply(input) as tf.SymbolicTensor });
    const weights: WeightMap = new Map([['stage_0_block_0_layer_scale/variable', tf.tensor1d([1, 2, 3, 4])]]);
    const report = assignKerasWeights(model, weights, { requireAll: true });
    expect(report.assigned).toEqual(['stage_0_block_0_layer_scale/gamma']);
    expect(Array.from(layer.getWeights()[0]?.dataSync() ?? [])).toEqual([1, 2, 3, 4]);
    disposeWeights(weights);
    model.dispose();
  });
});

describe('errors', () => {
  it('names a missing file', async () => {
    await expect(read('missing.h5')).rejects.toThrow(`Keras weight file not found: ${file('missing.h5')}`);
  });

  it('names a file that is not HDF5', async () => {
    await expect(read('not_hdf5.h5')).rejects.toThrow(`${file('not_hdf5.h5')} is neither an HDF5 file nor a zip archive`);
  });

  it('names an HDF5 file in an unknown layout', async () => {
    await expect(read('no_layout.h5')).rejects.toThrow(/no_layout\.h5 is an HDF5 file in an unknown layout.*found the groups \[x\]/);
  });

  it('names an archive without weights', async () => {
    await expect(read('no_weights.keras')).rejects.toThrow(/no_weights\.keras is a zip archive without model\.weights\.h5/);
  });
});
