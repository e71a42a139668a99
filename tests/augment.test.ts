/**
 * Checks the augmentation transforms on tfjs-node against exact geometric
 * expectations, against tf.image.transform on the pure-JavaScript CPU
 * backend, and against Keras's legacy ImageDataGenerator affine transform
 * (tests/oracle/keras_affine.py). The oracle runs with process.env.FER_PYTHON,
 * or .venv/bin/python relative to the repository root, which `npm run setup`
 * creates. Test images are real FER-2013 faces from process.env.FER_DATA, or
 * data/fer2013.
 */

import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import {
  applyTransforms,
  augmentBatch,
  isAugmentationOff,
  randomTransforms,
  STUDY_AUGMENTATION,
  type AugmentationSettings,
} from '../lib/data/augment';
import { Rng } from '../lib/util/rng';

const REPO_ROOT = resolve(__dirname, '..');
const DATA_DIR = resolve(REPO_ROOT, process.env.FER_DATA ?? 'data/fer2013');
const ORACLE_SCRIPT = resolve(REPO_ROOT, 'tests/oracle/keras_affine.py');
const SIZE = 48;

const FLIP_ONLY: AugmentationSettings = { rotationDegrees: 0, widthShift: 0, heightShift: 0, horizontalFlip: true };
const OFF: AugmentationSettings = { rotationDegrees: 0, widthShift: 0, heightShift: 0, horizontalFlip: false };

/** Real FER-2013 faces, each SIZE x SIZE grey values in [0, 255]. */
let faces: Float32Array[];

/**
 * An Rng that returns scripted values, so randomTransforms builds the
 * transform of chosen parameters. randomTransforms draws, per image,
 * uniform() for the angle in degrees, uniform() for the x shift and uniform()
 * for the y shift as fractions of the side, then next() for the flip when
 * flipping is on.
 */
class ScriptedRng extends Rng {
  private readonly values: number[];

  constructor(values: number[]) {
    super(0);
    this.values = [...values];
  }

  private take(): number {
    const value = this.values.shift();
    if (value === undefined) {
      throw new Error('ScriptedRng: no scripted values left');
    }
    return value;
  }

  override uniform(low: number, high: number): number {
    const value = this.take();
    if (value < low || value > high) {
      throw new Error(`ScriptedRng: value ${value} is outside [${low}, ${high}]`);
    }
    return value;
  }

  override next(): number {
    return this.take();
  }
}

interface Params {
  /** Rotation angle in degrees. */
  theta: number;
  /** Shift along x (columns) in pixels. */
  tx: number;
  /** Shift along y (rows) in pixels. */
  ty: number;
  flip: boolean;
}

/** Ranges wide enough for every scripted parameter. */
const SCRIPTED_SETTINGS: AugmentationSettings = { rotationDegrees: 180, widthShift: 0.5, heightShift: 0.5, horizontalFlip: true };

/** Builds our transforms for chosen parameters through randomTransforms on a square SIZE image. */
function transformsFor(params: readonly Params[]): Float32Array {
  const values = params.flatMap((p) => [p.theta, p.tx / SIZE, p.ty / SIZE, p.flip ? 0.25 : 0.75]);
  return randomTransforms(params.length, SIZE, SIZE, SCRIPTED_SETTINGS, new ScriptedRng(values));
}

/** Reads the first `count` images of a FER-2013 test class as grey floats. */
async function loadFaces(count: number): Promise<Float32Array[]> {
  const folder = join(DATA_DIR, 'test', 'happy');
  const names = readdirSync(folder).sort().slice(0, count);
  return Promise.all(
    names.map(async (name) => {
      const { data, info } = await sharp(join(folder, name)).greyscale().raw().toBuffer({ resolveWithObject: true });
      if (info.width !== SIZE || info.height !== SIZE || info.channels !== 1) {
        throw new Error(`${name}: expected a ${SIZE}x${SIZE} grey image, got ${info.width}x${info.height}x${info.channels}`);
      }
      return Float32Array.from(data);
    }),
  );
}

/**
 * Builds a [SIZE, SIZE, 3] image from face `index`: the face, its negative,
 * and its transpose, so a channel or axis mix-up changes the result.
 */
function colourFace(index: number): Float32Array {
  const face = faces[index] as Float32Array;
  const out = new Float32Array(SIZE * SIZE * 3);
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) {
      const o = (y * SIZE + x) * 3;
      out[o] = face[y * SIZE + x] as number;
      out[o + 1] = 255 - (face[y * SIZE + x] as number);
      out[o + 2] = face[x * SIZE + y] as number;
    }
  }
  return out;
}

function batchOf(images: readonly Float32Array[], channels: number): tf.Tensor4D {
  const data = new Float32Array(images.length * SIZE * SIZE * channels);
  images.forEach((image, i) => data.set(image, i * SIZE * SIZE * channels));
  return tf.tensor4d(data, [images.length, SIZE, SIZE, channels]);
}

function greyBatch(count: number): tf.Tensor4D {
  return batchOf(faces.slice(0, count), 1);
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    max = Math.max(max, Math.abs((a[i] as number) - (b[i] as number)));
  }
  return max;
}

function sameValues(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  return a.length === b.length && maxAbsDiff(a, b) === 0;
}

/** Mirrors an HWC image left to right. */
function mirror(image: ArrayLike<number>, channels: number): Float32Array {
  const out = new Float32Array(image.length);
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) {
      for (let c = 0; c < channels; c++) {
        out[(y * SIZE + x) * channels + c] = image[(y * SIZE + (SIZE - 1 - x)) * channels + c] as number;
      }
    }
  }
  return out;
}

function imageAt(batch: Float32Array, index: number, channels: number): Float32Array {
  const length = SIZE * SIZE * channels;
  return batch.subarray(index * length, (index + 1) * length);
}

/** Runs the Keras oracle. Throws with the fix when Python or Keras is missing. */
function runKerasOracle(images: number[][][][], cases: Array<Params & { image: number }>): number[][][][] {
  const configured = process.env.FER_PYTHON ?? '.venv/bin/python';
  // A bare command name is looked up on PATH, and a path is taken relative to the repository root.
  const python = configured.includes('/') ? resolve(REPO_ROOT, configured) : configured;
  const result = spawnSync(python, [ORACLE_SCRIPT], {
    cwd: REPO_ROOT,
    input: JSON.stringify({ images, cases }),
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
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
  return (JSON.parse(result.stdout) as { outputs: number[][][][] }).outputs;
}

function toNested(image: Float32Array, channels: number): number[][][] {
  return Array.from({ length: SIZE }, (_, y) =>
    Array.from({ length: SIZE }, (_, x) => Array.from(image.subarray((y * SIZE + x) * channels, (y * SIZE + x + 1) * channels))),
  );
}

beforeAll(async () => {
  if (!existsSync(join(DATA_DIR, 'test'))) {
    throw new Error(
      `FER-2013 not found at ${DATA_DIR} (expected ${join(DATA_DIR, 'test')}/<class>/*.jpg). ` +
        'See data/README.md for how to download it, or set FER_DATA to its folder.',
    );
  }
  await initBackend('node');
  faces = await loadFaces(32);
});

describe('randomTransforms', () => {
  it('returns eight values per image', () => {
    const transforms = randomTransforms(5, SIZE, SIZE, STUDY_AUGMENTATION, new Rng(1));
    expect(transforms).toHaveLength(40);
  });

  it('ends each transform with 0, 0', () => {
    const transforms = randomTransforms(5, SIZE, SIZE, STUDY_AUGMENTATION, new Rng(1));
    for (let i = 0; i < 5; i++) {
      expect([transforms[i * 8 + 6], transforms[i * 8 + 7]], `image ${i}`).toEqual([0, 0]);
    }
  });

  it('repeats for the same seed', () => {
    const first = randomTransforms(16, SIZE, SIZE, STUDY_AUGMENTATION, new Rng(5, 2));
    const second = randomTransforms(16, SIZE, SIZE, STUDY_AUGMENTATION, new Rng(5, 2));
    expect(Array.from(second)).toEqual(Array.from(first));
  });

  it('keeps shifts within the range', () => {
    const settings: AugmentationSettings = { ...STUDY_AUGMENTATION, horizontalFlip: false };
    const transforms = randomTransforms(200, SIZE, SIZE, settings, new Rng(3));
    const c = (SIZE - 1) / 2;
    for (let i = 0; i < 200; i++) {
      const t = transforms.subarray(i * 8, i * 8 + 8) as Float32Array;
      const sourceX = (t[0] as number) * c + (t[1] as number) * c + (t[2] as number);
      const sourceY = (t[3] as number) * c + (t[4] as number) * c + (t[5] as number);
      // Without a flip the centre's source is c - R(-theta) t, at distance |t| <= 0.2 * SIZE * sqrt(2) from c.
      const reach = Math.hypot(sourceX - c, sourceY - c);
      expect(reach, `image ${i}`).toBeLessThanOrEqual(0.2 * SIZE * Math.SQRT2 + 1e-3);
    }
  });

  it('keeps rotation within the range', () => {
    const settings: AugmentationSettings = { ...STUDY_AUGMENTATION, horizontalFlip: false };
    const transforms = randomTransforms(200, SIZE, SIZE, settings, new Rng(4));
    for (let i = 0; i < 200; i++) {
      const angle = (Math.atan2(transforms[i * 8 + 1] as number, transforms[i * 8] as number) * 180) / Math.PI;
      expect(Math.abs(angle), `image ${i}`).toBeLessThanOrEqual(20 + 1e-4);
    }
  });
});

describe('horizontal flip', () => {
  let input: Float32Array;
  let output: Float32Array;

  beforeAll(() => {
    const batch = greyBatch(32);
    const augmented = augmentBatch(batch, FLIP_ONLY, new Rng(2024));
    input = batch.dataSync() as Float32Array;
    output = augmented.dataSync() as Float32Array;
    tf.dispose([batch, augmented]);
  });

  it('gives mirror or identity', () => {
    for (let i = 0; i < 32; i++) {
      const original = imageAt(input, i, 1);
      const result = imageAt(output, i, 1);
      const isIdentity = sameValues(result, original);
      const isMirror = sameValues(result, mirror(original, 1));
      expect(isIdentity || isMirror, `image ${i}`).toBe(true);
    }
  });

  it('produces both outcomes', () => {
    let mirrored = 0;
    for (let i = 0; i < 32; i++) {
      const original = imageAt(input, i, 1);
      if (!sameValues(imageAt(output, i, 1), original)) {
        mirrored++;
      }
    }
    expect(mirrored).toBeGreaterThan(0);
    expect(mirrored).toBeLessThan(32);
  });
});

describe('integer shifts', () => {
  it('moves content right by 3', () => {
    const batch = greyBatch(1);
    const input = batch.dataSync();
    const output = applyTransforms(batch, Float32Array.from([1, 0, -3, 0, 1, 0, 0, 0])).dataSync();
    let wrong = 0;
    for (let y = 0; y < SIZE; y++) {
      for (let x = 3; x < SIZE; x++) {
        if (output[y * SIZE + x] !== input[y * SIZE + x - 3]) {
          wrong++;
        }
      }
    }
    expect(wrong).toBe(0);
    batch.dispose();
  });

  it('replicates the left edge', () => {
    const batch = greyBatch(1);
    const input = batch.dataSync();
    const output = applyTransforms(batch, Float32Array.from([1, 0, -3, 0, 1, 0, 0, 0])).dataSync();
    for (let y = 0; y < SIZE; y++) {
      const row = [output[y * SIZE], output[y * SIZE + 1], output[y * SIZE + 2]];
      expect(row, `row ${y}`).toEqual([input[y * SIZE], input[y * SIZE], input[y * SIZE]]);
    }
    batch.dispose();
  });

  it('moves content up by 2', () => {
    const batch = greyBatch(1);
    const input = batch.dataSync();
    const output = applyTransforms(batch, Float32Array.from([1, 0, 0, 0, 1, 2, 0, 0])).dataSync();
    let wrong = 0;
    for (let y = 0; y < SIZE - 2; y++) {
      for (let x = 0; x < SIZE; x++) {
        if (output[y * SIZE + x] !== input[(y + 2) * SIZE + x]) {
          wrong++;
        }
      }
    }
    expect(wrong).toBe(0);
    batch.dispose();
  });

  it('replicates the bottom edge', () => {
    const batch = greyBatch(1);
    const input = batch.dataSync();
    const output = applyTransforms(batch, Float32Array.from([1, 0, 0, 0, 1, 2, 0, 0])).dataSync();
    const lastRow = Array.from(input.subarray((SIZE - 1) * SIZE, SIZE * SIZE));
    expect(Array.from(output.subarray((SIZE - 2) * SIZE, (SIZE - 1) * SIZE))).toEqual(lastRow);
    expect(Array.from(output.subarray((SIZE - 1) * SIZE, SIZE * SIZE))).toEqual(lastRow);
    batch.dispose();
  });

  it('keeps every channel aligned', () => {
    const batch = batchOf([colourFace(0)], 3);
    const output = applyTransforms(batch, Float32Array.from([1, 0, -3, 0, 1, 0, 0, 0]));
    // Three copies of the first column, then every column but the last three.
    const leftEdge = tf.tile(batch.slice([0, 0, 0, 0], [1, SIZE, 1, 3]), [1, 1, 3, 1]);
    const rest = batch.slice([0, 0, 0, 0], [1, SIZE, SIZE - 3, 3]);
    const expected = tf.concat([leftEdge, rest], 2);
    expect(maxAbsDiff(output.dataSync(), expected.dataSync())).toBe(0);
    tf.dispose([batch, output, leftEdge, rest, expected]);
  });
});

describe('90-degree rotation', () => {
  /** rot90 by transpose then column reversal: out[y][x] = in[SIZE - 1 - x][y]. */
  function rot90(batch: tf.Tensor4D): tf.Tensor4D {
    return tf.reverse(tf.transpose(batch, [0, 2, 1, 3]), 2);
  }

  it('hand-built transform equals rot90', () => {
    const batch = batchOf([colourFace(1), colourFace(2)], 3);
    const transform = [0, 1, 0, -1, 0, SIZE - 1, 0, 0];
    const output = applyTransforms(batch, Float32Array.from([...transform, ...transform]));
    const expected = rot90(batch);
    expect(maxAbsDiff(output.dataSync(), expected.dataSync())).toBe(0);
    tf.dispose([batch, output, expected]);
  });

  it('theta +90 rotates the same way', () => {
    // Positive angles turn the content clockwise on screen (y points down).
    const batch = batchOf([colourFace(3)], 3);
    const output = applyTransforms(batch, transformsFor([{ theta: 90, tx: 0, ty: 0, flip: false }]));
    const expected = rot90(batch);
    expect(maxAbsDiff(output.dataSync(), expected.dataSync())).toBeLessThan(1e-3);
    tf.dispose([batch, output, expected]);
  });
});

describe('augmentBatch', () => {
  it('repeats for the same seed', () => {
    const batch = greyBatch(8);
    const first = augmentBatch(batch, STUDY_AUGMENTATION, new Rng(77));
    const second = augmentBatch(batch, STUDY_AUGMENTATION, new Rng(77));
    expect(maxAbsDiff(first.dataSync(), second.dataSync())).toBe(0);
    tf.dispose([batch, first, second]);
  });

  it('differs for another seed', () => {
    const batch = greyBatch(8);
    const first = augmentBatch(batch, STUDY_AUGMENTATION, new Rng(77));
    const second = augmentBatch(batch, STUDY_AUGMENTATION, new Rng(78));
    expect(maxAbsDiff(first.dataSync(), second.dataSync())).toBeGreaterThan(1);
    tf.dispose([batch, first, second]);
  });

  it('changes images when on', () => {
    const batch = greyBatch(8);
    const output = augmentBatch(batch, STUDY_AUGMENTATION, new Rng(9));
    expect(maxAbsDiff(output.dataSync(), batch.dataSync())).toBeGreaterThan(1);
    tf.dispose([batch, output]);
  });

  it('keeps shape and dtype', () => {
    const batch = batchOf([colourFace(0), colourFace(1)], 3);
    const output = augmentBatch(batch, STUDY_AUGMENTATION, new Rng(9));
    expect(output.shape).toEqual([2, SIZE, SIZE, 3]);
    expect(output.dtype).toBe('float32');
    tf.dispose([batch, output]);
  });

  it('off returns the input unchanged', () => {
    expect(isAugmentationOff(OFF)).toBe(true);
    const batch = greyBatch(4);
    const output = augmentBatch(batch, OFF, new Rng(1));
    expect(maxAbsDiff(output.dataSync(), batch.dataSync())).toBe(0);
    tf.dispose([batch, output]);
  });

  it('off returns a separate tensor', () => {
    const batch = greyBatch(2);
    const expected = Array.from(batch.dataSync());
    const output = augmentBatch(batch, OFF, new Rng(1));
    batch.dispose();
    expect(Array.from(output.dataSync())).toEqual(expected);
    output.dispose();
  });

  it('flip alone counts as on', () => {
    expect(isAugmentationOff(FLIP_ONLY)).toBe(false);
    expect(isAugmentationOff({ ...OFF, rotationDegrees: 1 })).toBe(false);
    expect(isAugmentationOff({ ...OFF, widthShift: 0.1 })).toBe(false);
    expect(isAugmentationOff({ ...OFF, heightShift: 0.1 })).toBe(false);
  });
});

describe('native kernel vs cpu backend', () => {
  let images: Float32Array[];
  let transforms: Float32Array;

  beforeAll(() => {
    images = [0, 1, 2, 3, 4, 5].map(colourFace);
    transforms = randomTransforms(images.length, SIZE, SIZE, STUDY_AUGMENTATION, new Rng(31337));
  });

  /** Applies `transforms` on the tfjs-node backend in one batch. */
  function nativeValues(): Float32Array {
    expect(tf.getBackend()).toBe('tensorflow');
    const batch = batchOf(images, 3);
    const output = applyTransforms(batch, transforms);
    const values = output.dataSync().slice() as Float32Array;
    tf.dispose([batch, output]);
    return values;
  }

  /** Runs `action` on the pure-JavaScript CPU backend, then switches back to tfjs-node. */
  async function onCpu<T>(action: () => T): Promise<T> {
    await tf.setBackend('cpu');
    try {
      return action();
    } finally {
      await tf.setBackend('tensorflow');
    }
  }

  it('matches cpu image by image', async () => {
    const native = nativeValues();
    const cpu = await onCpu(() =>
      images.map((image, i) => {
        const batch = batchOf([image], 3);
        const output = applyTransforms(batch, transforms.slice(i * 8, i * 8 + 8));
        const values = output.dataSync().slice() as Float32Array;
        tf.dispose([batch, output]);
        return values;
      }),
    );
    expect(tf.getBackend()).toBe('tensorflow');
    images.forEach((_, i) => {
      expect(maxAbsDiff(imageAt(native, i, 3), cpu[i] as Float32Array), `image ${i}`).toBeLessThanOrEqual(1e-3);
    });
  });

  it('matches cpu on a whole batch', async () => {
    const native = nativeValues();
    const cpu = await onCpu(() => {
      const batch = batchOf(images, 3);
      const output = applyTransforms(batch, transforms);
      const values = output.dataSync().slice() as Float32Array;
      tf.dispose([batch, output]);
      return values;
    });
    expect(tf.getBackend()).toBe('tensorflow');
    images.forEach((_, i) => {
      expect(maxAbsDiff(imageAt(native, i, 3), imageAt(cpu, i, 3)), `image ${i}`).toBeLessThanOrEqual(1e-3);
    });
  });
});

describe('Keras ImageDataGenerator oracle', () => {
  /**
   * Our parameters and the Keras parameters that give the same image.
   *
   * Ours samples output pixel p from c + R(-theta) (p - c - t), flip aside,
   * where R(a) is the rotation [[cos a, -sin a], [sin a, cos a]] on (x, y)
   * and c the centre. Keras's apply_affine_transform samples from
   * c + R(thetaK) (p - c + tK), with tK = (tx, ty) on (column, row) after its
   * axis swap, so thetaK = -theta and tK = -t. Our flip mirrors the source
   * before rotating, Keras's mirrors the output after it. Mirroring M
   * conjugates the map: M R(a) M = R(-a) and M t = (-tx, ty), which gives
   * thetaK = theta and tK = (tx, -ty) for flipped images. Both agree exactly,
   * not only up to the sign symmetry of uniform sampling.
   */
  function kerasParams(p: Params): Params {
    if (p.flip) {
      return { theta: p.theta, tx: p.tx, ty: -p.ty, flip: true };
    }
    return { theta: -p.theta, tx: -p.tx, ty: -p.ty, flip: false };
  }

  const CASES: Params[] = [
    { theta: 15, tx: 0, ty: 0, flip: false },
    { theta: -20, tx: 0, ty: 0, flip: true },
    { theta: 0, tx: 5.5, ty: -3.25, flip: false },
    { theta: 0, tx: -4, ty: 7, flip: true },
    { theta: 12.5, tx: -4.2, ty: 7.1, flip: false },
    { theta: -27, tx: 9.6, ty: -9.6, flip: true },
    { theta: 29, tx: 11.9, ty: 2.3, flip: true },
  ];

  let ours: Float32Array;
  let keras: Float32Array;
  const channels = 3;

  beforeAll(() => {
    const images = CASES.map((_, i) => colourFace(i));
    const batch = batchOf(images, channels);
    const output = applyTransforms(batch, transformsFor(CASES));
    ours = output.dataSync().slice() as Float32Array;
    tf.dispose([batch, output]);

    const outputs = runKerasOracle(
      images.map((image) => toNested(image, channels)),
      CASES.map((p, i) => ({ ...kerasParams(p), image: i })),
    );
    keras = Float32Array.from(outputs.flat(3));
  }, 120_000);

  /** Source coordinates of output pixel (x, y) under case `p`, in float64. */
  function sourceOf(p: Params, x: number, y: number): [number, number] {
    const c = (SIZE - 1) / 2;
    const a = (-p.theta * Math.PI) / 180;
    const u = x - p.tx - c;
    const v = y - p.ty - c;
    const sx = c + Math.cos(a) * u - Math.sin(a) * v;
    const sy = c + Math.sin(a) * u + Math.cos(a) * v;
    return [p.flip ? SIZE - 1 - sx : sx, sy];
  }

  it('matches Keras on interior pixels', () => {
    CASES.forEach((p, i) => {
      let max = 0;
      let compared = 0;
      for (let y = 0; y < SIZE; y++) {
        for (let x = 0; x < SIZE; x++) {
          const [sx, sy] = sourceOf(p, x, y);
          // Interior: the source lies at least one pixel inside the image, so no fill is involved.
          if (sx < 1 || sx > SIZE - 2 || sy < 1 || sy > SIZE - 2) {
            continue;
          }
          compared++;
          for (let ch = 0; ch < channels; ch++) {
            const index = ((i * SIZE + y) * SIZE + x) * channels + ch;
            max = Math.max(max, Math.abs((ours[index] as number) - (keras[index] as number)));
          }
        }
      }
      expect(compared, `case ${i} interior pixels`).toBeGreaterThan(SIZE * SIZE * 0.4);
      expect(max, `case ${i} ${JSON.stringify(p)}`).toBeLessThanOrEqual(1e-3);
    });
  });

  it('matches Keras fill at borders', () => {
    // Nearest-edge fill clamps the source coordinate in TensorFlow and extends the edge in scipy; both give the edge pixel.
    CASES.forEach((p, i) => {
      const image = imageAt(ours, i, channels);
      const reference = imageAt(keras, i, channels);
      expect(maxAbsDiff(image, reference), `case ${i} ${JSON.stringify(p)}`).toBeLessThanOrEqual(1e-3);
    });
  });
});
