import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';

import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { decodeImage, IMAGE_EXTENSIONS, ImageDecodeError, readImageRgb } from '../lib/data/decode';

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'decode-test-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function writeTemp(name: string, bytes: Uint8Array | string): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

type Rgb = [number, number, number];

/** Builds raw RGB pixels (HWC) from a colour function. */
function rgbPixels(width: number, height: number, colour: (x: number, y: number) => Rgb): Buffer {
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      data.set(colour(x, y), (y * width + x) * 3);
    }
  }
  return data;
}

function rawInput(width: number, height: number, channels: 1 | 2 | 3 | 4) {
  return { raw: { width, height, channels } };
}

function pixelAt(image: { data: Uint8Array; width: number }, channels: number, x: number, y: number): number[] {
  const start = (y * image.width + x) * channels;
  return Array.from(image.data.subarray(start, start + channels));
}

/** Awaits a promise that must reject with ImageDecodeError and returns the error. */
async function decodeFailure(promise: Promise<unknown>): Promise<ImageDecodeError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(ImageDecodeError);
  return error as ImageDecodeError;
}

// A 5x3 image with a different colour in every pixel. The odd width makes
// BMP rows need padding.
const PATTERN_WIDTH = 5;
const PATTERN_HEIGHT = 3;
const patternColour = (x: number, y: number): Rgb => [x * 50, y * 100 + 20, 240 - x * 30 - y * 10];
const PATTERN = rgbPixels(PATTERN_WIDTH, PATTERN_HEIGHT, patternColour);

// ---------------------------------------------------------------------------
// Minimal PNG and BMP writers, so the tests control every header field.

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) {
    c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return c >>> 0;
});

function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc = CRC_TABLE[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, data: Uint8Array): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

/** Writes an 8-bit palette PNG (colour type 3) with optional per-entry alpha (tRNS). */
function encodePalettePng(width: number, height: number, palette: Rgb[], alpha: number[], index: (x: number, y: number) => number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 3, 0, 0, 0], 8);
  const rows = Buffer.alloc(height * (width + 1));
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      rows[y * (width + 1) + 1 + x] = index(x, y);
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('PLTE', Buffer.from(palette.flat())),
    ...(alpha.length > 0 ? [pngChunk('tRNS', Buffer.from(alpha))] : []),
    pngChunk('IDAT', deflateSync(rows)),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

/** Returns a copy of a PNG with new IHDR dimensions and a matching CRC. */
function withPngSize(png: Buffer, width: number, height: number): Buffer {
  const copy = Buffer.from(png);
  copy.writeUInt32BE(width, 16);
  copy.writeUInt32BE(height, 20);
  copy.writeUInt32BE(crc32(copy.subarray(12, 29)), 29);
  return copy;
}

interface BmpSpec {
  width: number;
  height: number;
  bitsPerPixel: 1 | 4 | 8 | 16 | 24 | 32;
  /** Raw pixel value: a palette index, 0xRRGGBB for 24-bit, or the packed 16/32-bit word. */
  pixel: (x: number, y: number) => number;
  topDown?: boolean;
  /** 40 (BITMAPINFOHEADER) or 124 (BITMAPV5HEADER). */
  headerSize?: 40 | 124;
  compression?: number;
  /** Red, green, blue and optional alpha masks for BI_BITFIELDS. */
  masks?: number[];
  palette?: Rgb[];
}

function encodeBmp(spec: BmpSpec): Buffer {
  const { width, height, bitsPerPixel } = spec;
  const headerSize = spec.headerSize ?? 40;
  const compression = spec.compression ?? 0;
  const palette = spec.palette ?? [];
  const masksAfterHeader = headerSize === 40 && spec.masks ? spec.masks.length * 4 : 0;
  const stride = Math.floor((bitsPerPixel * width + 31) / 32) * 4;
  const pixelOffset = 14 + headerSize + masksAfterHeader + palette.length * 4;
  const file = Buffer.alloc(pixelOffset + stride * height);

  file.write('BM', 0, 'latin1');
  file.writeUInt32LE(file.length, 2);
  file.writeUInt32LE(pixelOffset, 10);
  file.writeUInt32LE(headerSize, 14);
  file.writeInt32LE(width, 18);
  file.writeInt32LE(spec.topDown ? -height : height, 22);
  file.writeUInt16LE(1, 26);
  file.writeUInt16LE(bitsPerPixel, 28);
  file.writeUInt32LE(compression, 30);
  file.writeUInt32LE(stride * height, 34);
  file.writeUInt32LE(palette.length, 46);
  spec.masks?.forEach((mask, i) => file.writeUInt32LE(mask, 54 + i * 4));
  if (headerSize === 124) {
    file.write('BGRs', 14 + 56, 'latin1'); // LCS_sRGB, stored little-endian
  }
  palette.forEach(([r, g, b], i) => file.set([b, g, r, 0], 14 + headerSize + masksAfterHeader + i * 4));

  for (let y = 0; y < height; y++) {
    const fileRow = spec.topDown ? y : height - 1 - y;
    const row = pixelOffset + fileRow * stride;
    for (let x = 0; x < width; x++) {
      const value = spec.pixel(x, y);
      if (bitsPerPixel < 8) {
        const perByte = 8 / bitsPerPixel;
        const shift = 8 - bitsPerPixel * ((x % perByte) + 1);
        file[row + Math.floor(x / perByte)] |= value << shift;
      } else if (bitsPerPixel === 8) {
        file[row + x] = value;
      } else if (bitsPerPixel === 16) {
        file.writeUInt16LE(value, row + x * 2);
      } else if (bitsPerPixel === 24) {
        file.set([value & 0xff, (value >> 8) & 0xff, (value >> 16) & 0xff], row + x * 3);
      } else {
        file.writeUInt32LE(value >>> 0, row + x * 4);
      }
    }
  }
  return file;
}

const packRgb = ([r, g, b]: Rgb): number => (r << 16) | (g << 8) | b;

// ---------------------------------------------------------------------------

describe('decodeImage options', () => {
  it('lists supported extensions', () => {
    for (const extension of ['.jpg', '.jpeg', '.png', '.webp', '.bmp', '.gif', '.tif', '.tiff', '.avif']) {
      expect(IMAGE_EXTENSIONS.has(extension)).toBe(true);
    }
    expect(IMAGE_EXTENSIONS.size).toBe(9);
  });

  it('square size sets both sides', async () => {
    const png = await sharp(PATTERN, rawInput(PATTERN_WIDTH, PATTERN_HEIGHT, 3)).png().toBuffer();
    const image = await decodeImage(png, { size: 7 });
    expect(image.height).toBe(7);
    expect(image.width).toBe(7);
  });

  it('size tuple is height first', async () => {
    const png = await sharp(PATTERN, rawInput(PATTERN_WIDTH, PATTERN_HEIGHT, 3)).png().toBuffer();
    const image = await decodeImage(png, { size: [30, 12] });
    expect(image.height).toBe(30);
    expect(image.width).toBe(12);
    expect(image.data.length).toBe(30 * 12 * 3);
  });

  it('rejects invalid size and fit', async () => {
    await expect(decodeImage(PATTERN, { size: 0 })).rejects.toThrow(RangeError);
    await expect(decodeImage(PATTERN, { size: [10, 1.5] })).rejects.toThrow(/size must be/);
    await expect(decodeImage(PATTERN, { size: 8, fit: 'stretch' as never })).rejects.toThrow(/fit must be/);
  });
});

describe('decodeImage with sharp formats', () => {
  it('applies EXIF orientation 6', async () => {
    // Stored 64 wide x 32 high with a red top-left quadrant. Orientation 6
    // means "rotate 90 degrees clockwise to display", which moves that
    // quadrant to the top right of a 32 x 64 upright image.
    const stored = rgbPixels(64, 32, (x, y) => (x < 32 && y < 16 ? [230, 20, 20] : [20, 20, 230]));
    const jpeg = await sharp(stored, rawInput(64, 32, 3)).jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toBuffer();
    expect((await sharp(jpeg).metadata()).orientation).toBe(6);
    const path = writeTemp('orientation-6.jpg', jpeg);

    const full = await readImageRgb(path);
    expect(full.width).toBe(32);
    expect(full.height).toBe(64);
    const [topRightRed, , topRightBlue] = pixelAt(full, 3, 24, 8);
    expect(topRightRed).toBeGreaterThan(180);
    expect(topRightBlue).toBeLessThan(80);
    const [topLeftRed, , topLeftBlue] = pixelAt(full, 3, 8, 8);
    expect(topLeftRed).toBeLessThan(80);
    expect(topLeftBlue).toBeGreaterThan(180);
    expect(pixelAt(full, 3, 24, 48)[2]).toBeGreaterThan(180);

    const resized = await decodeImage(path, { size: [64, 32] });
    expect(resized.channels).toBe(3);
    expect(pixelAt(resized, 3, 24, 8)[0]).toBeGreaterThan(180);
    expect(pixelAt(resized, 3, 8, 8)[0]).toBeLessThan(80);
  });

  it('greyscale PNG gives one channel', async () => {
    const grey = Buffer.from(Array.from({ length: 6 * 4 }, (_, i) => i * 10));
    const png = await sharp(grey, rawInput(6, 4, 1)).toColourspace('b-w').png().toBuffer();
    expect(png[25]).toBe(0); // PNG colour type 0: greyscale

    const image = await decodeImage(writeTemp('grey.png', png), { size: [4, 6] });
    expect(image.channels).toBe(1);
    expect(image.data.length).toBe(24);
    expect(Array.from(image.data)).toEqual(Array.from(grey));
  });

  it('greyscale PNG reads as RGB', async () => {
    const grey = Buffer.from([0, 60, 120, 250]);
    const png = await sharp(grey, rawInput(2, 2, 1)).toColourspace('b-w').png().toBuffer();
    const image = await readImageRgb(png);
    expect(image.data.length).toBe(2 * 2 * 3);
    expect(Array.from(image.data)).toEqual([0, 0, 0, 60, 60, 60, 120, 120, 120, 250, 250, 250]);
  });

  it('grey plus alpha flattens to black', async () => {
    // Grey 200 at alpha 0, 255 and 128.
    const greyAlpha = Buffer.from([200, 0, 200, 255, 200, 128]);
    const png = await sharp(greyAlpha, rawInput(3, 1, 2)).toColourspace('b-w').png().toBuffer();
    expect(png[25]).toBe(4); // PNG colour type 4: greyscale with alpha

    const image = await decodeImage(png, { size: [1, 3] });
    expect(image.channels).toBe(1);
    expect(image.data[0]).toBe(0);
    expect(image.data[1]).toBe(200);
    expect(Math.abs(image.data[2] - 100)).toBeLessThanOrEqual(1);
  });

  it('RGBA flattens onto black', async () => {
    const rgba = Buffer.from([255, 0, 0, 0, 10, 200, 30, 255, 200, 100, 50, 128]);
    const png = await sharp(rgba, rawInput(3, 1, 4)).png().toBuffer();
    expect(png[25]).toBe(6); // PNG colour type 6: RGBA

    const image = await decodeImage(png, { size: [1, 3] });
    expect(image.channels).toBe(3);
    expect(pixelAt(image, 3, 0, 0)).toEqual([0, 0, 0]);
    expect(pixelAt(image, 3, 1, 0)).toEqual([10, 200, 30]);
    const half = pixelAt(image, 3, 2, 0);
    expect(Math.abs(half[0] - 100)).toBeLessThanOrEqual(1);
    expect(Math.abs(half[1] - 50)).toBeLessThanOrEqual(1);
    expect(Math.abs(half[2] - 25)).toBeLessThanOrEqual(1);
  });

  // Every 16-bit boundary case of round(v / 257) plus an even spread.
  const SIXTEEN_BIT_VALUES = [
    0, 1, 128, 129, 200, 256, 257, 385, 386, 642, 643, 32767, 32768, 32896, 60000, 65407, 65408, 65534, 65535,
    ...Array.from({ length: 100 }, (_, i) => Math.round((i * 65535) / 99)),
  ];

  it('16-bit grey PNG scales', async () => {
    const samples = new Uint16Array(SIXTEEN_BIT_VALUES);
    const png = await sharp(samples, rawInput(samples.length, 1, 1)).toColourspace('grey16').png().toBuffer();
    expect(png[24]).toBe(16); // bit depth
    expect(png[25]).toBe(0);

    const image = await decodeImage(png, { size: [1, samples.length] });
    expect(image.channels).toBe(1);
    expect(Array.from(image.data)).toEqual(SIXTEEN_BIT_VALUES.map((v) => Math.round(v / 257)));
  });

  it('16-bit RGB PNG scales', async () => {
    const values = SIXTEEN_BIT_VALUES;
    const samples = new Uint16Array(values.length * 3);
    values.forEach((v, i) => samples.set([v, 65535 - v, (v * 7) % 65536], i * 3));
    const png = await sharp(samples, rawInput(values.length, 1, 3)).toColourspace('rgb16').png().toBuffer();
    expect(png[24]).toBe(16);
    expect(png[25]).toBe(2);

    const image = await decodeImage(png, { size: [1, values.length] });
    expect(image.channels).toBe(3);
    const channel = (c: number) => Array.from(image.data).filter((_, i) => i % 3 === c);
    expect(channel(0)).toEqual(values.map((v) => Math.round(v / 257)));
    expect(channel(1)).toEqual(values.map((v) => Math.round((65535 - v) / 257)));
    expect(channel(2)).toEqual(values.map((v) => Math.round(((v * 7) % 65536) / 257)));
  });

  it('16-bit TIFF scales', async () => {
    const samples = new Uint16Array(SIXTEEN_BIT_VALUES.flatMap((v) => [v, v, 65535 - v]));
    const tiff = await sharp(samples, rawInput(SIXTEEN_BIT_VALUES.length, 1, 3))
      .toColourspace('rgb16')
      .tiff({ compression: 'lzw' })
      .toBuffer();
    expect((await sharp(tiff).metadata()).depth).toBe('ushort');

    const image = await readImageRgb(tiff);
    const blue = Array.from(image.data).filter((_, i) => i % 3 === 2);
    expect(blue).toEqual(SIXTEEN_BIT_VALUES.map((v) => Math.round((65535 - v) / 257)));
  });

  it('16-bit PNG reads as RGB', async () => {
    const samples = new Uint16Array([200, 60000]);
    const png = await sharp(samples, rawInput(2, 1, 1)).toColourspace('grey16').png().toBuffer();
    const image = await readImageRgb(png);
    expect(Array.from(image.data)).toEqual([1, 1, 1, 233, 233, 233]);
  });

  it('lossless WebP matches source', async () => {
    const webp = await sharp(PATTERN, rawInput(PATTERN_WIDTH, PATTERN_HEIGHT, 3)).webp({ lossless: true }).toBuffer();
    const image = await decodeImage(writeTemp('pattern.webp', webp), { size: [PATTERN_HEIGHT, PATTERN_WIDTH] });
    expect(image.channels).toBe(3);
    expect(Array.from(image.data)).toEqual(Array.from(PATTERN));
  });

  it('lossless GIF and TIFF match source', async () => {
    const gif = await sharp(PATTERN, rawInput(PATTERN_WIDTH, PATTERN_HEIGHT, 3)).gif().toBuffer();
    const tiff = await sharp(PATTERN, rawInput(PATTERN_WIDTH, PATTERN_HEIGHT, 3)).tiff({ compression: 'lzw' }).toBuffer();
    const fromGif = await readImageRgb(writeTemp('pattern.gif', gif));
    const fromTiff = await readImageRgb(writeTemp('pattern.tiff', tiff));
    expect(Array.from(fromGif.data)).toEqual(Array.from(PATTERN));
    expect(Array.from(fromTiff.data)).toEqual(Array.from(PATTERN));
  });

  it('AVIF decodes to size', async () => {
    const colour = rgbPixels(16, 8, (x) => (x < 8 ? [220, 30, 30] : [30, 30, 220]));
    const avif = await sharp(colour, rawInput(16, 8, 3)).avif({ quality: 90, effort: 0 }).toBuffer();
    const image = await decodeImage(writeTemp('colour.avif', avif), { size: [8, 16] });
    expect(image.channels).toBe(3);
    expect(pixelAt(image, 3, 2, 4)[0]).toBeGreaterThan(150);
    expect(pixelAt(image, 3, 13, 4)[2]).toBeGreaterThan(150);
  });

  it('palette PNG comes out RGB', async () => {
    const palette: Rgb[] = [[255, 0, 0], [0, 128, 0], [10, 20, 250], [90, 90, 90]];
    // Entry 3 is fully transparent, so it flattens to black.
    const png = encodePalettePng(4, 2, palette, [255, 255, 255, 0], (x) => x);
    expect(png[25]).toBe(3); // PNG colour type 3: palette

    const image = await decodeImage(writeTemp('palette.png', png), { size: [2, 4] });
    expect(image.channels).toBe(3);
    expect(pixelAt(image, 3, 0, 1)).toEqual([255, 0, 0]);
    expect(pixelAt(image, 3, 1, 1)).toEqual([0, 128, 0]);
    expect(pixelAt(image, 3, 2, 1)).toEqual([10, 20, 250]);
    expect(pixelAt(image, 3, 3, 1)).toEqual([0, 0, 0]);
  });

  it('CMYK JPEG comes out sRGB', async () => {
    const colour = rgbPixels(16, 16, (x) => (x < 8 ? [220, 30, 30] : [30, 200, 30]));
    const jpeg = await sharp(colour, rawInput(16, 16, 3)).toColourspace('cmyk').jpeg({ quality: 95 }).toBuffer();
    const metadata = await sharp(jpeg).metadata();
    expect(metadata.space).toBe('cmyk');
    expect(metadata.channels).toBe(4);

    const image = await decodeImage(writeTemp('cmyk.jpg', jpeg), { size: 16 });
    expect(image.channels).toBe(3);
    const [leftRed, leftGreen] = pixelAt(image, 3, 2, 8);
    expect(leftRed).toBeGreaterThan(leftGreen + 100);
    // Saturated green is outside the CMYK gamut, so it returns duller
    // (about 116, 178, 29 with sharp 0.34.5's built-in CMYK profile).
    const [rightRed, rightGreen, rightBlue] = pixelAt(image, 3, 13, 8);
    expect(rightGreen).toBeGreaterThan(rightRed + 40);
    expect(rightGreen).toBeGreaterThan(rightBlue + 100);
  });

  it('grey RGB collapses to one channel', async () => {
    const greyRgb = rgbPixels(4, 4, (x, y) => [x * 40 + y, x * 40 + y, x * 40 + y]);
    const png = await sharp(greyRgb, rawInput(4, 4, 3)).png().toBuffer();
    expect(png[25]).toBe(2); // stored as RGB

    const image = await decodeImage(png, { size: 4 });
    expect(image.channels).toBe(1);
    expect(image.data[5]).toBe(41);
  });

  it('one coloured pixel keeps RGB', async () => {
    const almostGrey = rgbPixels(4, 4, (x, y) => (x === 3 && y === 3 ? [100, 100, 101] : [100, 100, 100]));
    const png = await sharp(almostGrey, rawInput(4, 4, 3)).png().toBuffer();
    const image = await decodeImage(png, { size: 4 });
    expect(image.channels).toBe(3);
  });

  it('file name with spaces and Unicode', async () => {
    const png = await sharp(PATTERN, rawInput(PATTERN_WIDTH, PATTERN_HEIGHT, 3)).png().toBuffer();
    const path = writeTemp('face ünïcödé 表情 01.png', png);
    const image = await decodeImage(path, { size: [PATTERN_HEIGHT, PATTERN_WIDTH] });
    expect(Array.from(image.data)).toEqual(Array.from(PATTERN));
  });
});

describe('decodeImage fit modes', () => {
  // 120 x 40: red, green and blue stripes, each 40 pixels wide.
  const stripes = rgbPixels(120, 40, (x) => (x < 40 ? [255, 0, 0] : x < 80 ? [0, 255, 0] : [0, 0, 255]));
  let png: Buffer;

  beforeAll(async () => {
    png = await sharp(stripes, rawInput(120, 40, 3)).png().toBuffer();
  });

  it('fill stretches to size', async () => {
    const image = await decodeImage(png, { size: 40, fit: 'fill' });
    expect(pixelAt(image, 3, 2, 20)).toEqual([255, 0, 0]);
    expect(pixelAt(image, 3, 20, 20)).toEqual([0, 255, 0]);
    expect(pixelAt(image, 3, 37, 20)).toEqual([0, 0, 255]);
  });

  it('fill is the default', async () => {
    const fill = await decodeImage(png, { size: 40, fit: 'fill' });
    const byDefault = await decodeImage(png, { size: 40 });
    expect(Array.from(byDefault.data)).toEqual(Array.from(fill.data));
  });

  it('cover crops the centre', async () => {
    const image = await decodeImage(png, { size: 40, fit: 'cover' });
    expect(pixelAt(image, 3, 0, 20)).toEqual([0, 255, 0]);
    expect(pixelAt(image, 3, 39, 20)).toEqual([0, 255, 0]);
  });

  it('contain letterboxes in black', async () => {
    const image = await decodeImage(png, { size: 40, fit: 'contain' });
    expect(pixelAt(image, 3, 20, 0)).toEqual([0, 0, 0]);
    expect(pixelAt(image, 3, 20, 39)).toEqual([0, 0, 0]);
    expect(pixelAt(image, 3, 2, 20)).toEqual([255, 0, 0]);
    expect(pixelAt(image, 3, 20, 20)).toEqual([0, 255, 0]);
  });
});

describe('decodeImage with BMP', () => {
  const pattern24 = (topDown: boolean): Buffer =>
    encodeBmp({
      width: PATTERN_WIDTH,
      height: PATTERN_HEIGHT,
      bitsPerPixel: 24,
      topDown,
      pixel: (x, y) => packRgb(patternColour(x, y)),
    });

  it('24-bit bottom-up BMP', async () => {
    const image = await decodeImage(writeTemp('bottom-up.bmp', pattern24(false)), {
      size: [PATTERN_HEIGHT, PATTERN_WIDTH],
    });
    expect(image.channels).toBe(3);
    expect(Array.from(image.data)).toEqual(Array.from(PATTERN));
  });

  it('24-bit top-down BMP', async () => {
    const image = await readImageRgb(writeTemp('top-down.bmp', pattern24(true)));
    expect(image.height).toBe(PATTERN_HEIGHT);
    expect(image.width).toBe(PATTERN_WIDTH);
    expect(Array.from(image.data)).toEqual(Array.from(PATTERN));
  });

  it('BMP detected by content', async () => {
    const image = await readImageRgb(writeTemp('really-a-bmp.jpg', pattern24(false)));
    expect(Array.from(image.data)).toEqual(Array.from(PATTERN));
  });

  it('BMP resizes with sharp', async () => {
    const image = await decodeImage(pattern24(false), { size: [6, 10] });
    expect(image.height).toBe(6);
    expect(image.width).toBe(10);
    expect(image.data.length).toBe(6 * 10 * 3);
  });

  it('32-bit BI_RGB ignores fourth byte', async () => {
    const bmp = encodeBmp({
      width: PATTERN_WIDTH,
      height: PATTERN_HEIGHT,
      bitsPerPixel: 32,
      pixel: (x, y) => (0x7f << 24) | packRgb(patternColour(x, y)),
    });
    const image = await readImageRgb(bmp);
    expect(Array.from(image.data)).toEqual(Array.from(PATTERN));
  });

  it('32-bit BI_BITFIELDS with alpha', async () => {
    // V5 header, masks in RGBA byte order (not the usual BGRA), alpha 0, 255, 128.
    const colours: Rgb[] = [[255, 0, 0], [10, 200, 30], [200, 100, 50]];
    const alphas = [0, 255, 128];
    const bmp = encodeBmp({
      width: 3,
      height: 1,
      bitsPerPixel: 32,
      headerSize: 124,
      compression: 3,
      masks: [0x000000ff, 0x0000ff00, 0x00ff0000, 0xff000000],
      pixel: (x) => colours[x][0] | (colours[x][1] << 8) | (colours[x][2] << 16) | (alphas[x] << 24),
    });
    const image = await decodeImage(bmp, { size: [1, 3] });
    expect(pixelAt(image, 3, 0, 0)).toEqual([0, 0, 0]);
    expect(pixelAt(image, 3, 1, 0)).toEqual([10, 200, 30]);
    expect(Math.abs(pixelAt(image, 3, 2, 0)[0] - 100)).toBeLessThanOrEqual(1);
  });

  it('all-zero alpha BMP is opaque', async () => {
    const bmp = encodeBmp({
      width: PATTERN_WIDTH,
      height: PATTERN_HEIGHT,
      bitsPerPixel: 32,
      headerSize: 124,
      compression: 3,
      masks: [0x00ff0000, 0x0000ff00, 0x000000ff, 0xff000000],
      pixel: (x, y) => packRgb(patternColour(x, y)),
    });
    const image = await readImageRgb(bmp);
    expect(Array.from(image.data)).toEqual(Array.from(PATTERN));
  });

  it('16-bit RGB565 BI_BITFIELDS', async () => {
    // Full-scale fields must map to 255 and zero to 0.
    const bmp = encodeBmp({
      width: 3,
      height: 1,
      bitsPerPixel: 16,
      compression: 3,
      masks: [0xf800, 0x07e0, 0x001f],
      pixel: (x) => [0xf800, 0x07e0, 0x001f][x],
    });
    const image = await readImageRgb(bmp);
    expect(Array.from(image.data)).toEqual([255, 0, 0, 0, 255, 0, 0, 0, 255]);
  });

  it('8-bit palette BMP', async () => {
    const palette: Rgb[] = [[255, 0, 0], [0, 128, 0], [10, 20, 250], [90, 90, 90], [1, 2, 3], [200, 201, 202]];
    const bmp = encodeBmp({
      width: PATTERN_WIDTH,
      height: PATTERN_HEIGHT,
      bitsPerPixel: 8,
      palette,
      pixel: (x, y) => (x + y) % palette.length,
    });
    const image = await decodeImage(bmp, { size: [PATTERN_HEIGHT, PATTERN_WIDTH] });
    expect(image.channels).toBe(3);
    expect(pixelAt(image, 3, 0, 0)).toEqual([255, 0, 0]);
    expect(pixelAt(image, 3, 3, 1)).toEqual([1, 2, 3]);
    expect(pixelAt(image, 3, 4, 1)).toEqual([200, 201, 202]);
    expect(pixelAt(image, 3, 4, 2)).toEqual([255, 0, 0]);
  });

  it('8-bit grey palette BMP', async () => {
    const palette = Array.from({ length: 256 }, (_, i): Rgb => [i, i, i]);
    const bmp = encodeBmp({ width: 4, height: 2, bitsPerPixel: 8, palette, pixel: (x, y) => x * 60 + y });
    const image = await decodeImage(bmp, { size: [2, 4] });
    expect(image.channels).toBe(1);
    expect(Array.from(image.data)).toEqual([0, 60, 120, 180, 1, 61, 121, 181]);
  });

  it('4-bit and 1-bit palette BMP', async () => {
    const palette16 = Array.from({ length: 16 }, (_, i): Rgb => [i * 16, 255 - i * 16, i]);
    const bmp4 = encodeBmp({ width: 5, height: 2, bitsPerPixel: 4, palette: palette16, pixel: (x, y) => x * 3 + y });
    const fourBit = await readImageRgb(bmp4);
    expect(pixelAt(fourBit, 3, 4, 1)).toEqual(palette16[13]);

    const bmp1 = encodeBmp({
      width: 11,
      height: 2,
      bitsPerPixel: 1,
      palette: [[0, 0, 0], [255, 255, 255]],
      pixel: (x, y) => (x + y) % 2,
    });
    const oneBit = await decodeImage(bmp1, { size: [2, 11] });
    expect(oneBit.channels).toBe(1);
    expect(Array.from(oneBit.data.subarray(0, 11))).toEqual([0, 255, 0, 255, 0, 255, 0, 255, 0, 255, 0]);
    expect(Array.from(oneBit.data.subarray(11))).toEqual([255, 0, 255, 0, 255, 0, 255, 0, 255, 0, 255]);
  });

  it('RLE8 BMP is rejected', async () => {
    const bmp = encodeBmp({
      width: 4,
      height: 2,
      bitsPerPixel: 8,
      compression: 1,
      palette: [[0, 0, 0]],
      pixel: () => 0,
    });
    const error = await decodeFailure(decodeImage(bmp, { size: 4 }, 'rle.bmp'));
    expect(error.path).toBe('rle.bmp');
    expect(error.reason).toContain('RLE8-compressed (BI_RLE8) BMP is not supported');
  });

  it('truncated BMP is rejected', async () => {
    const bmp = pattern24(false);
    const error = await decodeFailure(decodeImage(bmp.subarray(0, bmp.length - 20), { size: 4 }));
    expect(error.reason).toContain('truncated BMP pixel data');
  });

  it('BMP zero and absurd sizes', async () => {
    const zero = pattern24(false);
    zero.writeInt32LE(0, 18);
    const zeroError = await decodeFailure(decodeImage(zero, { size: 4 }));
    expect(zeroError.reason).toContain('width and height must be non-zero');

    const huge = pattern24(false);
    huge.writeInt32LE(1_000_000, 18);
    huge.writeInt32LE(1_000_000, 22);
    const hugeError = await decodeFailure(decodeImage(huge, { size: 4 }));
    expect(hugeError.reason).toContain('exceed the limit');
  });
});

describe('decodeImage errors', () => {
  let jpeg: Buffer;
  let png: Buffer;

  beforeAll(async () => {
    const colour = rgbPixels(64, 48, (x, y) => [x * 4, y * 5, 128]);
    jpeg = await sharp(colour, rawInput(64, 48, 3)).jpeg({ quality: 90 }).toBuffer();
    png = await sharp(colour, rawInput(64, 48, 3)).png().toBuffer();
  });

  it('truncated JPEG is an error', async () => {
    const path = writeTemp('truncated.jpg', jpeg.subarray(0, Math.floor(jpeg.length * 0.6)));
    const error = await decodeFailure(decodeImage(path, { size: 48 }));
    expect(error.path).toBe(path);
    expect(error.reason).toContain('truncated or corrupt JPEG data');
    expect(error.message.startsWith(`${path}: `)).toBe(true);
  });

  it('truncated PNG is an error', async () => {
    const path = writeTemp('truncated.png', png.subarray(0, Math.floor(png.length * 0.6)));
    const error = await decodeFailure(decodeImage(path, { size: 48 }));
    expect(error.reason).toContain('truncated or corrupt PNG data');
  });

  it('empty file is an error', async () => {
    const path = writeTemp('empty.jpg', '');
    const error = await decodeFailure(decodeImage(path, { size: 48 }));
    expect(error.reason).toBe('empty file');
  });

  it('text named .jpg is an error', async () => {
    const path = writeTemp('notes.jpg', 'These are my notes, not a photo.\n');
    const error = await decodeFailure(decodeImage(path, { size: 48 }));
    expect(error.reason).toMatch(/^not an image \(unrecognised content\)/);
    expect(error.reason).toContain('These are my notes');
  });

  it('Git LFS pointer is named', async () => {
    const pointer = 'version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 2048\n';
    const error = await decodeFailure(decodeImage(Buffer.from(pointer), { size: 48 }, 'face.png'));
    expect(error.reason).toContain('Git LFS pointer');
  });

  it('missing file is an error', async () => {
    const path = join(dir, 'no-such-face.png');
    const error = await decodeFailure(readImageRgb(path));
    expect(error.path).toBe(path);
    expect(error.reason).toBe('file not found');
  });

  it('directory is an error', async () => {
    const error = await decodeFailure(decodeImage(dir, { size: 48 }));
    expect(error.reason).toContain('is a directory');
  });

  it('unsupported formats are named', async () => {
    const heic = Buffer.concat([Buffer.from([0, 0, 0, 24]), Buffer.from('ftypheic\0\0\0\0mif1heic', 'latin1'), Buffer.alloc(64)]);
    const heicError = await decodeFailure(decodeImage(heic, { size: 48 }, 'phone.heic'));
    expect(heicError.reason).toContain('unsupported image format HEIC');

    const psd = Buffer.concat([Buffer.from('8BPS', 'latin1'), Buffer.alloc(64)]);
    const psdError = await decodeFailure(decodeImage(psd, { size: 48 }));
    expect(psdError.reason).toContain('unsupported image format Photoshop PSD');
  });

  it('Buffer errors use the label', async () => {
    const labelled = await decodeFailure(decodeImage(Buffer.alloc(0), { size: 48 }, 'upload 3'));
    expect(labelled.message).toBe('upload 3: empty file');
    const unlabelled = await decodeFailure(decodeImage(Buffer.alloc(0), { size: 48 }));
    expect(unlabelled.path).toBe('<buffer>');
  });

  it('zero PNG dimension is an error', async () => {
    const error = await decodeFailure(decodeImage(withPngSize(png, 0, 48), { size: 48 }));
    expect(error.reason).toContain('width and height must be non-zero');
  });

  it('absurd PNG dimension is an error', async () => {
    const error = await decodeFailure(decodeImage(withPngSize(png, 100_000, 100_000), { size: 48 }));
    expect(error.reason).toContain('exceed the limit');
  });

  it('zero JPEG dimension is an error', async () => {
    const sof = jpeg.indexOf(Buffer.from([0xff, 0xc0]));
    expect(sof).toBeGreaterThan(0);
    const zeroHeight = Buffer.from(jpeg);
    zeroHeight.writeUInt16BE(0, sof + 5);
    const error = await decodeFailure(decodeImage(zeroHeight, { size: 48 }));
    expect(error.reason).toContain('zero width or height');
  });

  it('absurd JPEG dimension is an error', async () => {
    const sof = jpeg.indexOf(Buffer.from([0xff, 0xc0]));
    const huge = Buffer.from(jpeg);
    huge.writeUInt16BE(65000, sof + 5);
    huge.writeUInt16BE(65000, sof + 7);
    const error = await decodeFailure(decodeImage(huge, { size: 48 }));
    expect(error.reason).toContain('exceed the limit');
  });
});

// ---------------------------------------------------------------------------
// Real images. FER-2013 is looked up in $FER_DATA, then data/fer2013 in the
// repository, then the shared dataset folder.

function findFerRoot(): string {
  const candidates = [process.env.FER_DATA, join(__dirname, '..', 'data', 'fer2013'), '/work/shared/datasets/fer2013'];
  for (const candidate of candidates) {
    if (candidate && existsSync(join(candidate, 'test'))) {
      return candidate;
    }
  }
  throw new Error(
    'FER-2013 not found: set FER_DATA to a folder containing test/<class>/*.jpg ' +
      '(as in the Kaggle FER-2013 download), or put the data in data/fer2013',
  );
}

/** Lists the first two files of each class folder in the FER-2013 test split, sorted by name. */
function ferSamples(): string[] {
  const testDir = join(findFerRoot(), 'test');
  return readdirSync(testDir)
    .filter((name) => statSync(join(testDir, name)).isDirectory())
    .sort()
    .flatMap((className) =>
      readdirSync(join(testDir, className))
        .filter((file) => file.toLowerCase().endsWith('.jpg'))
        .sort()
        .slice(0, 2)
        .map((file) => join(testDir, className, file)),
    );
}

describe('real FER-2013 images', () => {
  it('FER faces decode greyscale', async () => {
    const files = ferSamples();
    expect(files.length).toBeGreaterThanOrEqual(14);
    for (const file of files) {
      const image = await decodeImage(file, { size: 48 });
      expect(image.channels, file).toBe(1);
      expect(image.data.length, file).toBe(48 * 48);
      expect(Math.max(...image.data) - Math.min(...image.data), `${file} looks blank`).toBeGreaterThan(20);
    }
  });

  it('FER faces match sharp greyscale', async () => {
    for (const file of ferSamples().slice(0, 4)) {
      const image = await decodeImage(file, { size: 48 });
      const reference = await sharp(file).toColourspace('b-w').raw().toBuffer();
      expect(Array.from(image.data), file).toEqual(Array.from(reference));
    }
  });

  it('FER faces upscale and read RGB', async () => {
    const [file] = ferSamples();
    const upscaled = await decodeImage(file, { size: [96, 80] });
    expect(upscaled.channels).toBe(1);
    expect(upscaled.height).toBe(96);
    expect(upscaled.width).toBe(80);
    expect(upscaled.data.length).toBe(96 * 80);

    const rgb = await readImageRgb(file);
    expect(rgb.height).toBe(48);
    expect(rgb.width).toBe(48);
    expect(rgb.data.length).toBe(48 * 48 * 3);
  });
});

describe('real ImageNet BMP samples', () => {
  const sampleDir = process.env.IMAGENET_SAMPLES ?? '/work/shared/images/imagenet-samples';
  const names = ['bird.bmp', 'cat.bmp', 'dragonfly.bmp', 'grace_hopper.bmp'];

  function samplePath(name: string): string {
    const path = join(sampleDir, name);
    if (!existsSync(path)) {
      throw new Error(`${path} not found: set IMAGENET_SAMPLES to the folder containing ${names.join(', ')}`);
    }
    return path;
  }

  it.each(names)('%s decodes at header size', async (name) => {
    const path = samplePath(name);
    const bytes = readFileSync(path);
    const width = bytes.readInt32LE(18);
    const height = Math.abs(bytes.readInt32LE(22));

    const image = await readImageRgb(path);
    expect(image.width).toBe(width);
    expect(image.height).toBe(height);
    expect(image.data.length).toBe(width * height * 3);

    const distinct = new Set(image.data).size;
    expect(distinct, 'too few distinct values: blank image').toBeGreaterThan(100);

    // The file is bottom-up (positive height), so the output's first pixel is
    // the first pixel of the file's last row, stored as BGR.
    expect(bytes.readInt32LE(22)).toBeGreaterThan(0);
    expect(bytes.readUInt16LE(28)).toBe(24);
    const pixelOffset = bytes.readUInt32LE(10);
    const stride = Math.floor((24 * width + 31) / 32) * 4;
    const lastRow = pixelOffset + stride * (height - 1);
    expect(Array.from(image.data.subarray(0, 3))).toEqual([bytes[lastRow + 2], bytes[lastRow + 1], bytes[lastRow]]);
  });

  it('ImageNet BMP resizes to 224', async () => {
    const image = await decodeImage(samplePath('grace_hopper.bmp'), { size: 224 });
    expect(image.channels).toBe(3);
    expect(image.height).toBe(224);
    expect(image.width).toBe(224);
    expect(image.data.length).toBe(224 * 224 * 3);
  });
});
