/**
 * Checks lib/data/preprocess.ts against keras.applications.imagenet_utils.
 * preprocess_input, run by tests/oracle/keras_preprocess.py with
 * process.env.FER_PYTHON, or .venv/bin/python relative to the repository
 * root, which `npm run setup` creates.
 */

import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';

import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import { describePreprocessing, pixelsToTensor, preprocess } from '../lib/data/preprocess';
import type { PreprocessingMode } from '../lib/models/types';
import { Rng } from '../lib/util/rng';

const REPO_ROOT = resolve(__dirname, '..');
const ORACLE_SCRIPT = resolve(REPO_ROOT, 'tests/oracle/keras_preprocess.py');
const TOLERANCE = 1e-5;
const SHAPE: [number, number, number, number] = [2, 8, 8, 3];
const KERAS_MODES = ['tf', 'caffe', 'torch'] as const;

/** Builds a fixed float32 batch in [0, 255], with the extremes 0 and 255 as the first two values. */
function fixedBatch(): Float32Array {
  const rng = new Rng(2013, 7);
  const values = new Float32Array(SHAPE.reduce((a, b) => a * b, 1));
  for (let i = 0; i < values.length; i++) {
    values[i] = rng.uniform(0, 255);
  }
  values[0] = 0;
  values[1] = 255;
  return values;
}

function nest(values: Float32Array): number[][][][] {
  const [n, h, w, c] = SHAPE;
  return Array.from({ length: n }, (_, b) =>
    Array.from({ length: h }, (_, y) =>
      Array.from({ length: w }, (_, x) => Array.from(values.subarray(((b * h + y) * w + x) * c, ((b * h + y) * w + x + 1) * c))),
    ),
  );
}

/** Runs the oracle once for all modes. Throws with the fix when Python or Keras is missing. */
function runOracle(batch: Float32Array): Record<string, number[][][][]> {
  const configured = process.env.FER_PYTHON ?? '.venv/bin/python';
  // A bare command name is looked up on PATH, and a path is taken relative to the repository root.
  const python = configured.includes('/') ? resolve(REPO_ROOT, configured) : configured;
  const result = spawnSync(python, [ORACLE_SCRIPT], {
    cwd: REPO_ROOT,
    input: JSON.stringify({ batch: nest(batch), modes: KERAS_MODES }),
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2' },
  });
  if (result.error) {
    throw new Error(
      `Python for the Keras oracle failed to start (${python}: ${result.error.message}). ` +
        'Run `npm run setup` to create .venv with Keras and TensorFlow, or set FER_PYTHON to a Python that has them.',
    );
  }
  if (result.status !== 0) {
    throw new Error(
      `The Keras oracle exited with status ${result.status}. If Keras is missing, ` +
        `run \`npm run setup\` or set FER_PYTHON. stderr:\n${result.stderr}`,
    );
  }
  return JSON.parse(result.stdout) as Record<string, number[][][][]>;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    max = Math.max(max, Math.abs((a[i] as number) - (b[i] as number)));
  }
  return max;
}

function run(values: Float32Array, mode: PreprocessingMode): Float32Array {
  const input = tf.tensor4d(values, SHAPE);
  const output = preprocess(input, mode);
  const result = output.dataSync().slice() as Float32Array;
  tf.dispose([input, output]);
  return result;
}

let batch: Float32Array;
let keras: Record<string, number[][][][]>;

beforeAll(async () => {
  await initBackend('node');
  batch = fixedBatch();
  keras = runOracle(batch);
}, 120_000);

describe('preprocess against Keras', () => {
  for (const mode of KERAS_MODES) {
    it(`mode '${mode}' matches Keras`, () => {
      const expected = (keras[mode] as number[][][][]).flat(3);
      expect(maxAbsDiff(run(batch, mode), expected)).toBeLessThanOrEqual(TOLERANCE);
    });
  }
});

describe('preprocess by hand', () => {
  it("'tf' maps 0 and 255 to -1 and 1", () => {
    const output = run(batch, 'tf');
    expect(output[0]).toBe(-1);
    expect(output[1]).toBe(1);
  });

  it("'caffe' swaps to BGR", () => {
    const output = run(batch, 'caffe');
    // First pixel: RGB (0, 255, b) becomes BGR (b, 255, 0) minus the BGR means.
    expect(output[0]).toBeCloseTo((batch[2] as number) - 103.939, 4);
    expect(output[1]).toBeCloseTo(255 - 116.779, 4);
    expect(output[2]).toBeCloseTo(0 - 123.68, 4);
  });

  it("'torch' normalises per channel", () => {
    const output = run(batch, 'torch');
    expect(output[0]).toBeCloseTo((0 - 0.485) / 0.229, 5);
    expect(output[1]).toBeCloseTo((1 - 0.456) / 0.224, 5);
  });

  it("'none' keeps the values", () => {
    expect(maxAbsDiff(run(batch, 'none'), batch)).toBe(0);
  });

  it("'none' returns a separate tensor", () => {
    const input = tf.tensor4d(batch, SHAPE);
    const output = preprocess(input, 'none');
    input.dispose();
    expect(output.isDisposed).toBe(false);
    expect(maxAbsDiff(output.dataSync(), batch)).toBe(0);
    output.dispose();
  });

  it('keeps shape and dtype', () => {
    for (const mode of ['tf', 'caffe', 'torch', 'none'] as const) {
      const input = tf.tensor4d(batch, SHAPE);
      const output = preprocess(input, mode);
      expect(output.shape, mode).toEqual(SHAPE);
      expect(output.dtype, mode).toBe('float32');
      tf.dispose([input, output]);
    }
  });

  it('leaks no tensors', () => {
    const input = tf.tensor4d(batch, SHAPE);
    const before = tf.memory().numTensors;
    const outputs = (['tf', 'caffe', 'torch', 'none'] as const).map((mode) => preprocess(input, mode));
    expect(tf.memory().numTensors).toBe(before + 4);
    tf.dispose([input, ...outputs]);
  });

  it('describes every mode', () => {
    expect(describePreprocessing('tf')).toContain('x / 127.5 - 1');
    expect(describePreprocessing('caffe')).toContain('103.939, 116.779, 123.68');
    expect(describePreprocessing('torch')).toContain('0.229, 0.224, 0.225');
    expect(describePreprocessing('none')).toContain('[0, 255]');
  });
});

describe('pixelsToTensor', () => {
  const pixels = Uint8Array.from({ length: 2 * 4 * 4 * 3 }, (_, i) => (i * 37) % 256);

  it('returns float32 NHWC', () => {
    const tensor = pixelsToTensor(pixels, 2, 4);
    expect(tensor.shape).toEqual([2, 4, 4, 3]);
    expect(tensor.dtype).toBe('float32');
    tensor.dispose();
  });

  it('keeps byte values', () => {
    const tensor = pixelsToTensor(pixels, 2, 4);
    expect(Array.from(tensor.dataSync())).toEqual(Array.from(pixels));
    tensor.dispose();
  });

  it('keeps 0 and 255', () => {
    const tensor = pixelsToTensor(Uint8Array.from([0, 255, 128]), 1, 1);
    expect(Array.from(tensor.dataSync())).toEqual([0, 255, 128]);
    tensor.dispose();
  });

  it('rejects a size mismatch', () => {
    expect(() => pixelsToTensor(pixels, 2, 5)).toThrow();
  });
});
