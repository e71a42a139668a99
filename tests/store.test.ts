/**
 * Checks ImageStore on a temporary folder of real FER-2013 images mixed with
 * broken files. The images come from process.env.FER_DATA, or data/fer2013
 * relative to the repository root.
 */

import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { ImageRecord } from '../lib/data/dataset';
import { ImageStore } from '../lib/data/store';
import { getLogLevel, setLogLevel, type LogLevel } from '../lib/util/log';

const REPO_ROOT = resolve(__dirname, '..');
const DATA_DIR = resolve(REPO_ROOT, process.env.FER_DATA ?? 'data/fer2013');
const FER_NAMES = ['angry', 'disgust', 'fear', 'happy', 'neutral', 'sad', 'surprise'];
const SIZE = 48;

let dir: string;
let previousLogLevel: LogLevel;

/** Real images first, broken files in between, in the order given to ImageStore.load. */
let records: ImageRecord[];
let goodRecords: ImageRecord[];
let truncatedPath: string;
let emptyPath: string;
let textPath: string;
let colourPath: string;
let colourPixels: Buffer;

let cachedStore: ImageStore;
let uncachedStore: ImageStore;

/** Copies the first image of FER-2013 test class `label` into the temp folder. */
function copyRealImage(label: number): ImageRecord {
  const folder = join(DATA_DIR, 'test', FER_NAMES[label] as string);
  const name = readdirSync(folder).sort()[0] as string;
  const target = join(dir, `${FER_NAMES[label]}-${name}`);
  copyFileSync(join(folder, name), target);
  return { path: target, label };
}

/** Decodes a file with sharp at its own size into RGB, as an independent reference. */
async function referenceRgb(file: string): Promise<Uint8Array> {
  const { data, info } = await sharp(readFileSync(file)).toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  expect(info.width, file).toBe(SIZE);
  expect(info.height, file).toBe(SIZE);
  expect(info.channels, file).toBe(3);
  return new Uint8Array(data.buffer, data.byteOffset, data.length);
}

function imageSlice(pixels: Uint8Array, slot: number): Uint8Array {
  const length = SIZE * SIZE * 3;
  return pixels.subarray(slot * length, (slot + 1) * length);
}

beforeAll(async () => {
  if (!existsSync(join(DATA_DIR, 'test'))) {
    throw new Error(
      `FER-2013 not found at ${DATA_DIR} (expected ${join(DATA_DIR, 'test')}/<class>/*.jpg). ` +
        'See data/README.md for how to download it, or set FER_DATA to its folder.',
    );
  }
  previousLogLevel = getLogLevel();
  setLogLevel('silent');
  dir = mkdtempSync(join(tmpdir(), 'store-test-'));

  const real = [0, 3, 5, 6, 4].map(copyRealImage);

  truncatedPath = join(dir, 'truncated.jpg');
  const whole = readFileSync(real[0]!.path);
  writeFileSync(truncatedPath, whole.subarray(0, Math.floor(whole.length / 2)));

  emptyPath = join(dir, 'empty.jpg');
  writeFileSync(emptyPath, '');

  textPath = join(dir, 'notes.png');
  writeFileSync(textPath, 'These are notes, not a picture.\n');

  // A colour image with distinct channels, so the RGB path of the store is covered too.
  colourPixels = Buffer.alloc(SIZE * SIZE * 3);
  for (let i = 0; i < SIZE * SIZE; i++) {
    colourPixels[i * 3] = (i * 7) % 256;
    colourPixels[i * 3 + 1] = (i * 3 + 50) % 256;
    colourPixels[i * 3 + 2] = 255 - (i % 256);
  }
  colourPath = join(dir, 'colour.png');
  await sharp(colourPixels, { raw: { width: SIZE, height: SIZE, channels: 3 } }).png().toFile(colourPath);

  records = [
    real[0]!,
    { path: truncatedPath, label: 2 },
    real[1]!,
    { path: emptyPath, label: 1 },
    real[2]!,
    { path: colourPath, label: 4 },
    { path: textPath, label: 0 },
    real[3]!,
    real[4]!,
  ];
  goodRecords = records.filter((r) => ![truncatedPath, emptyPath, textPath].includes(r.path));

  cachedStore = await ImageStore.load(records, { size: SIZE, label: 'cached', silent: true });
  uncachedStore = await ImageStore.load(records, { size: SIZE, label: 'uncached', silent: true, memoryBudgetBytes: 1 });
});

afterAll(() => {
  setLogLevel(previousLogLevel);
  if (dir !== undefined) {
    rmSync(dir, { recursive: true, force: true });
  }
});

describe('ImageStore.load', () => {
  it('skips three broken files', () => {
    expect(cachedStore.skipped.map((s) => s.path).sort()).toEqual([emptyPath, textPath, truncatedPath].sort());
  });

  it('reports a truncated JPEG', () => {
    const entry = cachedStore.skipped.find((s) => s.path === truncatedPath);
    // libvips words the cause "Premature end of JPEG file" but, under concurrent decodes, sometimes only "Unknown error".
    expect(entry?.reason).toMatch(/^truncated or corrupt JPEG data \((.*premature end|unknown error)/i);
  });

  it('reports an empty file', () => {
    const entry = cachedStore.skipped.find((s) => s.path === emptyPath);
    expect(entry?.reason).toBe('empty file');
  });

  it('reports text named .png', () => {
    const entry = cachedStore.skipped.find((s) => s.path === textPath);
    expect(entry?.reason).toBe('not an image (unrecognised content); the file starts with the text "These are notes, not a picture."');
  });

  it('keeps the rest in order', () => {
    expect(cachedStore.records).toEqual(goodRecords);
    expect(cachedStore.length).toBe(6);
  });

  it('labels() follows records', () => {
    expect(Array.from(cachedStore.labels())).toEqual(goodRecords.map((r) => r.label));
    expect(cachedStore.labels()).toBeInstanceOf(Int32Array);
  });

  it('caches within the budget', () => {
    expect(cachedStore.cached).toBe(true);
    // Five greyscale images of one byte per pixel and one colour image of three.
    expect(cachedStore.memoryBytes()).toBe(5 * SIZE * SIZE + SIZE * SIZE * 3);
  });

  it('skips caching over the budget', () => {
    expect(uncachedStore.cached).toBe(false);
    expect(uncachedStore.memoryBytes()).toBe(0);
  });

  it('uncached store skips the same', () => {
    expect(uncachedStore.records).toEqual(goodRecords);
    expect(uncachedStore.skipped.map((s) => s.path).sort()).toEqual([emptyPath, textPath, truncatedPath].sort());
  });
});

describe('ImageStore.batch', () => {
  const indices = [5, 0, 3, 3, 1];

  it('returns NHWC uint8 RGB', async () => {
    const batch = await cachedStore.batch(indices);
    expect(batch.pixels).toBeInstanceOf(Uint8Array);
    expect(batch.pixels.length).toBe(indices.length * SIZE * SIZE * 3);
    expect(batch.count).toBe(indices.length);
    expect(batch.size).toBe(SIZE);
  });

  it('returns the labels', async () => {
    const batch = await cachedStore.batch(indices);
    expect(Array.from(batch.labels)).toEqual(indices.map((i) => goodRecords[i]!.label));
  });

  it('replicates grey to three channels', async () => {
    const batch = await cachedStore.batch([0, 1, 2, 4, 5]);
    for (let slot = 0; slot < batch.count; slot++) {
      const image = imageSlice(batch.pixels, slot);
      let mismatches = 0;
      for (let p = 0; p < image.length; p += 3) {
        if (image[p] !== image[p + 1] || image[p] !== image[p + 2]) {
          mismatches++;
        }
      }
      expect(mismatches, `slot ${slot}`).toBe(0);
    }
  });

  it('grey pixels match sharp decode', async () => {
    const batch = await cachedStore.batch([0, 1, 2, 4, 5]);
    for (const [slot, index] of [0, 1, 2, 4, 5].entries()) {
      const expected = await referenceRgb(goodRecords[index]!.path);
      expect(Buffer.from(imageSlice(batch.pixels, slot)).equals(Buffer.from(expected)), goodRecords[index]!.path).toBe(true);
    }
  });

  it('keeps colour channels in order', async () => {
    const batch = await cachedStore.batch([3]);
    expect(Buffer.from(imageSlice(batch.pixels, 0)).equals(colourPixels)).toBe(true);
  });

  it('repeats an index', async () => {
    const batch = await cachedStore.batch(indices);
    expect(Buffer.from(imageSlice(batch.pixels, 2)).equals(Buffer.from(imageSlice(batch.pixels, 3)))).toBe(true);
  });

  it('cached equals uncached', async () => {
    const cached = await cachedStore.batch(indices);
    const uncached = await uncachedStore.batch(indices);
    expect(Buffer.from(uncached.pixels).equals(Buffer.from(cached.pixels))).toBe(true);
    expect(Array.from(uncached.labels)).toEqual(Array.from(cached.labels));
  });

  it('returns an empty batch', async () => {
    const batch = await cachedStore.batch([]);
    expect(batch.count).toBe(0);
    expect(batch.pixels.length).toBe(0);
  });

  it('cached rejects out-of-range index', async () => {
    for (const index of [6, 100, -1]) {
      await expect(cachedStore.batch([0, index]), `index ${index}`).rejects.toThrow(RangeError);
    }
  });

  it('uncached rejects out-of-range index', async () => {
    for (const index of [6, 100, -1]) {
      await expect(uncachedStore.batch([0, index]), `index ${index}`).rejects.toThrow(RangeError);
    }
  });

  it('names the index in the error', async () => {
    await expect(cachedStore.batch([6])).rejects.toThrow('Image index 6 is outside the store of 6 images.');
  });
});

describe('ImageStore resizing', () => {
  it('resizes to the requested size', async () => {
    const store = await ImageStore.load(goodRecords, { size: 32, silent: true });
    const batch = await store.batch([0, 3]);
    expect(batch.pixels.length).toBe(2 * 32 * 32 * 3);
    expect(batch.size).toBe(32);
  });

});
