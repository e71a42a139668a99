/**
 * Heatmap overlays: colour maps, bilinear resizing of class activation maps,
 * and blending onto the image with sharp.
 */
import sharp from 'sharp';

import type { ResizeFit } from '../data/decode';

/** 8-bit RGB pixels, row-major HWC. */
export interface RgbImage {
  data: Uint8Array;
  height: number;
  width: number;
}

/** A single-channel float map, row-major. */
export interface FloatMap {
  data: Float32Array;
  height: number;
  width: number;
}

export const COLORMAPS = ['jet', 'hot', 'grey'] as const;
export type ColormapName = (typeof COLORMAPS)[number];

type Segments = ReadonlyArray<readonly [x: number, y: number]>;

/** Matplotlib's segment data for jet and hot (matplotlib/_cm.py), one list of (x, value) per channel. */
const SEGMENTS: Record<Exclude<ColormapName, 'grey'>, readonly [Segments, Segments, Segments]> = {
  jet: [
    [
      [0, 0],
      [0.35, 0],
      [0.66, 1],
      [0.89, 1],
      [1, 0.5],
    ],
    [
      [0, 0],
      [0.125, 0],
      [0.375, 1],
      [0.64, 1],
      [0.91, 0],
      [1, 0],
    ],
    [
      [0, 0.5],
      [0.11, 1],
      [0.34, 1],
      [0.65, 0],
      [1, 0],
    ],
  ],
  hot: [
    [
      [0, 0.0416],
      [0.365079, 1],
      [1, 1],
    ],
    [
      [0, 0],
      [0.365079, 0],
      [0.746032, 1],
      [1, 1],
    ],
    [
      [0, 0],
      [0.746032, 0],
      [1, 1],
    ],
  ],
};

function interpolateSegments(segments: Segments, x: number): number {
  for (let i = 1; i < segments.length; i++) {
    const [x1, y1] = segments[i] as readonly [number, number];
    if (x <= x1) {
      const [x0, y0] = segments[i - 1] as readonly [number, number];
      return x1 === x0 ? y1 : y0 + ((x - x0) / (x1 - x0)) * (y1 - y0);
    }
  }
  return (segments[segments.length - 1] as readonly [number, number])[1];
}

const lookupTables = new Map<ColormapName, Uint8Array>();

/** 256-entry RGB lookup table of a colour map, as matplotlib quantises it. */
export function colormapTable(name: ColormapName): Uint8Array {
  const cached = lookupTables.get(name);
  if (cached !== undefined) {
    return cached;
  }
  if (!COLORMAPS.includes(name)) {
    throw new RangeError(`Unknown colour map ${JSON.stringify(name)}: expected one of ${COLORMAPS.join(', ')}.`);
  }
  const table = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) {
    const x = i / 255;
    for (let c = 0; c < 3; c++) {
      const value = name === 'grey' ? x : interpolateSegments(SEGMENTS[name][c] as Segments, x);
      table[i * 3 + c] = Math.round(Math.min(1, Math.max(0, value)) * 255);
    }
  }
  lookupTables.set(name, table);
  return table;
}

/** Colours values in [0, 1] (clipped) with a colour map; returns RGB bytes. */
export function applyColormap(values: ArrayLike<number>, name: ColormapName): Uint8Array {
  const table = colormapTable(name);
  const out = new Uint8Array(values.length * 3);
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number;
    const index = Number.isFinite(v) ? Math.round(Math.min(1, Math.max(0, v)) * 255) : 0;
    out[i * 3] = table[index * 3] as number;
    out[i * 3 + 1] = table[index * 3 + 1] as number;
    out[i * 3 + 2] = table[index * 3 + 2] as number;
  }
  return out;
}

/**
 * Resizes a map bilinearly with half-pixel centres and clamped edges, as
 * tf.image.resize (TensorFlow 2) and tfjs's resizeBilinear(halfPixelCenters) do.
 */
export function resizeBilinear(map: FloatMap, height: number, width: number): FloatMap {
  const out = new Float32Array(height * width);
  const scaleY = map.height / height;
  const scaleX = map.width / width;
  for (let y = 0; y < height; y++) {
    const sy = Math.max(0, (y + 0.5) * scaleY - 0.5);
    const y0 = Math.min(Math.floor(sy), map.height - 1);
    const y1 = Math.min(y0 + 1, map.height - 1);
    const fy = sy - y0;
    for (let x = 0; x < width; x++) {
      const sx = Math.max(0, (x + 0.5) * scaleX - 0.5);
      const x0 = Math.min(Math.floor(sx), map.width - 1);
      const x1 = Math.min(x0 + 1, map.width - 1);
      const fx = sx - x0;
      const top = (map.data[y0 * map.width + x0] as number) * (1 - fx) + (map.data[y0 * map.width + x1] as number) * fx;
      const bottom = (map.data[y1 * map.width + x0] as number) * (1 - fx) + (map.data[y1 * map.width + x1] as number) * fx;
      out[y * width + x] = top * (1 - fy) + bottom * fy;
    }
  }
  return { data: out, height, width };
}

function cropMap(map: FloatMap, left: number, top: number, width: number, height: number): FloatMap {
  const out = new Float32Array(width * height);
  for (let y = 0; y < height; y++) {
    out.set(map.data.subarray((top + y) * map.width + left, (top + y) * map.width + left + width), y * width);
  }
  return { data: out, height, width };
}

interface Rect {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** Computes the centred crop of the original that 'cover' resizing keeps, in original pixels. */
function coverCrop(image: { width: number; height: number }, inputWidth: number, inputHeight: number): Rect {
  const scale = Math.max(inputWidth / image.width, inputHeight / image.height);
  const width = Math.min(image.width, Math.round(inputWidth / scale));
  const height = Math.min(image.height, Math.round(inputHeight / scale));
  return { left: Math.floor((image.width - width) / 2), top: Math.floor((image.height - height) / 2), width, height };
}

/** Computes the part of the model input that 'contain' resizing fills with the image, in input pixels. */
function containContent(image: { width: number; height: number }, inputWidth: number, inputHeight: number): Rect {
  const scale = Math.min(inputWidth / image.width, inputHeight / image.height);
  const width = Math.max(1, Math.min(inputWidth, Math.round(image.width * scale)));
  const height = Math.max(1, Math.min(inputHeight, Math.round(image.height * scale)));
  return { left: Math.floor((inputWidth - width) / 2), top: Math.floor((inputHeight - height) / 2), width, height };
}

export interface OverlayOptions {
  colormap?: ColormapName;
  /** Weight of the heatmap colour in the blend, 0 (image only) to 1 (colour only); default 0.4. */
  opacity?: number;
  /**
   * Resize mode that produced the model input, so that the heatmap lands on
   * the pixels the model saw. With 'fill' (default) the heatmap covers the
   * whole image. With 'cover' it covers the centred crop, which is shown
   * instead of the whole image, and 'contain' drops its padded border.
   */
  fit?: ResizeFit;
  /** Output size in pixels; default the size of the image (or of its 'cover' crop). */
  width?: number;
  height?: number;
}

export interface RenderedOverlay {
  /** The image as shown under the heatmap: the original or its crop, at the output size. */
  image: RgbImage;
  /** The blended overlay at the output size. */
  overlay: RgbImage;
  /** The heatmap at the output size, values in [0, 1]. */
  heatmap: FloatMap;
}

async function resizeRgb(image: RgbImage, crop: Rect | undefined, width: number, height: number): Promise<RgbImage> {
  let pipeline = sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } });
  if (crop !== undefined) {
    pipeline = pipeline.extract(crop);
  }
  const sourceWidth = crop?.width ?? image.width;
  const sourceHeight = crop?.height ?? image.height;
  if (sourceWidth !== width || sourceHeight !== height) {
    pipeline = pipeline.resize({ width, height, fit: 'fill' });
  }
  const { data, info } = await pipeline.raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), height: info.height, width: info.width };
}

/**
 * Renders a class activation map over the image it explains. `map` is the
 * normalised map at any resolution that covers the whole model input (the
 * layer map or the input-sized heatmap) and `input` is the model's input size.
 * The map is resized bilinearly to the output size, coloured, and blended
 * onto the image by sharp's composite.
 */
export async function renderOverlay(
  image: RgbImage,
  map: FloatMap,
  input: { width: number; height: number },
  options: OverlayOptions = {},
): Promise<RenderedOverlay> {
  const opacity = options.opacity ?? 0.4;
  if (!(opacity >= 0 && opacity <= 1)) {
    throw new RangeError(`Invalid overlay opacity ${opacity}: expected a number from 0 to 1.`);
  }
  const fit = options.fit ?? 'fill';
  const crop = fit === 'cover' ? coverCrop(image, input.width, input.height) : undefined;
  const width = options.width ?? crop?.width ?? image.width;
  const height = options.height ?? crop?.height ?? image.height;

  let source = map;
  if (fit === 'contain') {
    const content = containContent(image, input.width, input.height);
    const atInput = map.width === input.width && map.height === input.height ? map : resizeBilinear(map, input.height, input.width);
    source = cropMap(atInput, content.left, content.top, content.width, content.height);
  }
  const heatmap = resizeBilinear(source, height, width);
  const base = await resizeRgb(image, crop, width, height);

  const colours = applyColormap(heatmap.data, options.colormap ?? 'jet');
  const rgba = Buffer.alloc(width * height * 4);
  const alpha = Math.round(opacity * 255);
  for (let i = 0; i < width * height; i++) {
    rgba[i * 4] = colours[i * 3] as number;
    rgba[i * 4 + 1] = colours[i * 3 + 1] as number;
    rgba[i * 4 + 2] = colours[i * 3 + 2] as number;
    rgba[i * 4 + 3] = alpha;
  }
  const { data, info } = await sharp(base.data, { raw: { width, height, channels: 3 } })
    .composite([{ input: rgba, raw: { width, height, channels: 4 } }])
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) {
    throw new Error(`sharp returned ${info.channels} channels for the overlay instead of 3.`);
  }
  return { image: base, overlay: { data: new Uint8Array(data.buffer, data.byteOffset, data.length), height, width }, heatmap };
}

/**
 * Writes RGB pixels as PNG. `description` goes into the EXIF ImageDescription
 * tag, so the method and layer stay with the file.
 */
export async function writeRgbPng(file: string, image: RgbImage, description?: string): Promise<void> {
  let pipeline = sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } }).png();
  if (description !== undefined) {
    pipeline = pipeline.withExif({ IFD0: { ImageDescription: description } });
  }
  await pipeline.toFile(file);
}
