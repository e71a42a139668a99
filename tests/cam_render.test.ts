/**
 * Attention shares, face regions, colour maps, overlays and galleries of
 * lib/explain: the measured numbers and the PNG files a user gets.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import { attentionShare, categorise, CentralFaceRegion, DEFAULT_FOCUS_THRESHOLD } from '../lib/explain/attention';
import { writeGallery } from '../lib/explain/gallery';
import { applyColormap, colormapTable, renderOverlay, resizeBilinear, writeRgbPng, type RgbImage } from '../lib/explain/overlay';
import { selectTiles, type ExplainedImage } from '../lib/explain/run';

const WORK = fs.mkdtempSync(path.join(os.tmpdir(), 'fer-cam-render-'));

beforeAll(async () => {
  await initBackend('node');
});

afterAll(() => {
  fs.rmSync(WORK, { recursive: true, force: true });
});

function solidImage(width: number, height: number, value: number): RgbImage {
  return { data: new Uint8Array(width * height * 3).fill(value), width, height };
}

describe('central face region', () => {
  it('default ellipse covers about 44% of the image', () => {
    const region = new CentralFaceRegion().maskFor({ index: 0 }, 224, 224);
    expect(region.areaFraction).toBeCloseTo(Math.PI * 0.35 * 0.4, 2);
  });

  it('box covers width times height', () => {
    const region = new CentralFaceRegion({ shape: 'box', widthFraction: 0.5, heightFraction: 0.5 }).maskFor({ index: 0 }, 100, 100);
    expect(region.areaFraction).toBe(0.25);
    expect(region.mask[50 * 100 + 50]).toBe(1);
    expect(region.mask[10 * 100 + 10]).toBe(0);
  });

  it('ellipse is centred and symmetric', () => {
    const { mask } = new CentralFaceRegion().maskFor({ index: 0 }, 48, 48);
    for (let y = 0; y < 48; y++) {
      for (let x = 0; x < 48; x++) {
        expect(mask[y * 48 + x]).toBe(mask[(47 - y) * 48 + (47 - x)]);
      }
    }
    expect(mask[24 * 48 + 24]).toBe(1);
    expect(mask[0]).toBe(0);
  });

  it('names its shape and size', () => {
    expect(new CentralFaceRegion().description).toBe('central ellipse 70% of width x 80% of height (44% of the image)');
  });

  it('rejects fractions outside (0, 1]', () => {
    expect(() => new CentralFaceRegion({ widthFraction: 0 })).toThrow(/Invalid face region width fraction 0/);
    expect(() => new CentralFaceRegion({ heightFraction: 1.5 })).toThrow(/Invalid face region height fraction 1.5/);
  });
});

describe('attention share', () => {
  const region = new CentralFaceRegion().maskFor({ index: 0 }, 64, 64);

  it('uniform map gets the area fraction', () => {
    expect(attentionShare(new Float32Array(64 * 64).fill(0.3), region)).toBeCloseTo(region.areaFraction, 10);
  });

  it('map inside the region gets 1', () => {
    expect(attentionShare(region.mask, region)).toBe(1);
  });

  it('map outside the region gets 0', () => {
    const outside = region.mask.map((v) => 1 - v);
    expect(attentionShare(outside, region)).toBe(0);
  });

  it('empty map gets NaN', () => {
    expect(attentionShare(new Float32Array(64 * 64), region)).toBeNaN();
  });

  it('rejects a map of another size', () => {
    expect(() => attentionShare(new Float32Array(10), region)).toThrow(/does not match the 64x64 region mask/);
  });

  it('rejects negative values', () => {
    const map = new Float32Array(64 * 64).fill(0.1);
    map[5] = -0.5;
    expect(() => attentionShare(map, region)).toThrow(/value -0.5 at index 5 is negative/);
  });

  it('sorts predictions into galleries', () => {
    expect(categorise(true, 0.8, DEFAULT_FOCUS_THRESHOLD)).toBe('correct_focused');
    expect(categorise(true, DEFAULT_FOCUS_THRESHOLD, DEFAULT_FOCUS_THRESHOLD)).toBe('correct_focused');
    expect(categorise(true, 0.5, DEFAULT_FOCUS_THRESHOLD)).toBe('correct_misplaced');
    expect(categorise(true, Number.NaN, DEFAULT_FOCUS_THRESHOLD)).toBe('correct_misplaced');
    expect(categorise(false, 0.9, DEFAULT_FOCUS_THRESHOLD)).toBe('misclassified');
  });

  it('default threshold is clearly above a uniform map', () => {
    expect(DEFAULT_FOCUS_THRESHOLD).toBeGreaterThan(1.4 * new CentralFaceRegion().maskFor({ index: 0 }, 224, 224).areaFraction);
  });
});

describe('tile selection', () => {
  const image = (pathName: string, confidence: number, category: ExplainedImage['category']): ExplainedImage => ({
    index: 0,
    path: pathName,
    trueClass: 0,
    predictedClass: 0,
    confidence,
    targetClass: 0,
    targetProbability: confidence,
    attentionShare: 0.5,
    regionAreaFraction: 0.44,
    category,
    method: 'gradcam',
    layerName: 'conv',
    rawMax: 1,
    layerMap: new Float32Array(1),
    layerHeight: 1,
    layerWidth: 1,
  });

  it('takes the most confident first, ties by path', () => {
    const images = [
      image('c.jpg', 0.5, 'misclassified'),
      image('b.jpg', 0.9, 'misclassified'),
      image('a.jpg', 0.5, 'misclassified'),
      image('d.jpg', 0.99, 'correct_focused'),
    ];
    expect(selectTiles(images, 'misclassified', 2).map((i) => i.path)).toEqual(['b.jpg', 'a.jpg']);
    expect(selectTiles(images, 'correct_misplaced', 5)).toEqual([]);
  });
});

describe('colour maps and resizing', () => {
  it('jet runs from dark blue to dark red as in matplotlib', () => {
    expect(Array.from(applyColormap([0], 'jet'))).toEqual([0, 0, 128]);
    expect(Array.from(applyColormap([1], 'jet'))).toEqual([128, 0, 0]);
    // 0.5 falls on entry 128 of 256, x = 128 / 255: red (x - 0.35) / 0.31, blue 1 - (x - 0.34) / 0.31.
    expect(Array.from(applyColormap([0.5], 'jet'))).toEqual([125, 255, 122]);
  });

  it('hot and grey end at white', () => {
    expect(Array.from(applyColormap([1], 'hot'))).toEqual([255, 255, 255]);
    expect(Array.from(applyColormap([0, 1], 'grey'))).toEqual([0, 0, 0, 255, 255, 255]);
  });

  it('clips values outside [0, 1]', () => {
    expect(Array.from(applyColormap([-3, 7], 'grey'))).toEqual([0, 0, 0, 255, 255, 255]);
  });

  it('rejects an unknown colour map', () => {
    expect(() => colormapTable('rainbow' as 'jet')).toThrow(/Unknown colour map "rainbow"/);
  });

  it('bilinear resize matches tfjs with half-pixel centres', () => {
    const data = Float32Array.from({ length: 5 * 3 }, (_, i) => Math.sin(i) ** 2);
    for (const [h, w] of [
      [48, 48],
      [7, 11],
      [3, 2],
    ] as const) {
      const ours = resizeBilinear({ data, height: 5, width: 3 }, h, w);
      const theirs = tf.tidy(() => tf.image.resizeBilinear(tf.tensor4d(data, [1, 5, 3, 1]), [h, w], false, true).dataSync());
      let max = 0;
      ours.data.forEach((v, i) => (max = Math.max(max, Math.abs(v - (theirs[i] as number)))));
      expect(max).toBeLessThan(1e-6);
    }
  });
});

describe('overlay', () => {
  const map = { data: Float32Array.from([0, 0.5, 0.5, 1]), height: 2, width: 2 };

  it('has the size of the original image', async () => {
    const rendered = await renderOverlay(solidImage(48, 48, 100), map, { width: 96, height: 96 });
    expect([rendered.overlay.width, rendered.overlay.height]).toEqual([48, 48]);
    expect(rendered.overlay.data.length).toBe(48 * 48 * 3);
    expect(rendered.heatmap.data.length).toBe(48 * 48);
  });

  it('opacity 0 shows the image only', async () => {
    const image = solidImage(16, 16, 77);
    const rendered = await renderOverlay(image, map, { width: 16, height: 16 }, { opacity: 0 });
    expect(Array.from(rendered.overlay.data)).toEqual(Array.from(image.data));
  });

  it('opacity 1 shows the colour map only', async () => {
    const rendered = await renderOverlay(solidImage(16, 16, 77), map, { width: 16, height: 16 }, { opacity: 1, colormap: 'grey' });
    const expected = applyColormap(rendered.heatmap.data, 'grey');
    let max = 0;
    rendered.overlay.data.forEach((v, i) => (max = Math.max(max, Math.abs(v - (expected[i] as number)))));
    expect(max).toBeLessThanOrEqual(1);
  });

  it('cover fit shows the centred crop', async () => {
    const rendered = await renderOverlay(solidImage(80, 40, 10), map, { width: 32, height: 32 }, { fit: 'cover' });
    expect([rendered.overlay.width, rendered.overlay.height]).toEqual([40, 40]);
  });

  it('contain fit keeps the whole image', async () => {
    const rendered = await renderOverlay(solidImage(80, 40, 10), map, { width: 32, height: 32 }, { fit: 'contain' });
    expect([rendered.overlay.width, rendered.overlay.height]).toEqual([80, 40]);
  });

  it('rejects an opacity above 1', async () => {
    await expect(renderOverlay(solidImage(4, 4, 0), map, { width: 4, height: 4 }, { opacity: 1.5 })).rejects.toThrow(/Invalid overlay opacity 1.5/);
  });

  it('PNG carries the description', async () => {
    const file = path.join(WORK, 'overlay.png');
    await writeRgbPng(file, solidImage(8, 8, 50), 'Grad-CAM at layer conv_pw_13_relu');
    const metadata = await sharp(file).metadata();
    expect(metadata.format).toBe('png');
    expect(metadata.exif?.toString('latin1')).toContain('Grad-CAM at layer conv_pw_13_relu');
  });
});

describe('gallery', () => {
  it('lays out tiles in rows under the title', async () => {
    const tile = { image: solidImage(40, 40, 200), overlay: solidImage(40, 40, 30), caption: ['true: anger', 'pred: anger (0.91)', 'attention share: 0.72'] };
    const file = path.join(WORK, 'gallery.png');
    const size = await writeGallery(file, ['Title & <layer>'], [tile, tile, tile], { tileSize: 40, columns: 2 }, 'layer conv_pw_13_relu');
    const metadata = await sharp(file).metadata();
    expect([metadata.width, metadata.height]).toEqual([size.width, size.height]);
    // Two rows of tiles, each 40 pixels of image and four caption lines.
    expect(size.height).toBeGreaterThan(2 * 40 + 30);
    expect(metadata.exif?.toString('latin1')).toContain('conv_pw_13_relu');
  });

  it('says so when a category is empty', async () => {
    const file = path.join(WORK, 'empty.png');
    await writeGallery(file, ['Correct, attention on the face'], [], { tileSize: 40 });
    expect(fs.existsSync(file)).toBe(true);
  });

  it('rejects tiles of another size', async () => {
    const tile = { image: solidImage(20, 20, 0), overlay: solidImage(40, 40, 0), caption: [] };
    await expect(writeGallery(path.join(WORK, 'bad.png'), ['t'], [tile], { tileSize: 40 })).rejects.toThrow(/20x20 pixels does not match the tile size 40/);
  });
});
