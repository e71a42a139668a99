/**
 * Image decoding for datasets: reads a file or buffer, applies EXIF
 * orientation, flattens alpha, converts to 8-bit sRGB and resizes with sharp.
 * BMP is decoded by ./bmp because sharp's bundled libvips cannot read it.
 */

import { readFile } from 'node:fs/promises';

import sharp from 'sharp';

import { BmpFormatError, decodeBmp, isBmp } from './bmp';

export type ResizeFit = 'fill' | 'cover' | 'contain';

export interface DecodeOptions {
  /** Output size in pixels: one number for a square, or [height, width]. */
  size: number | [height: number, width: number];
  /**
   * Aspect-ratio handling, default 'fill'. 'fill' stretches to the size, as
   * Keras's image_dataset_from_directory does. 'cover' scales and crops the
   * centre, and 'contain' scales to fit and pads with black.
   */
  fit?: ResizeFit;
}

/**
 * 8-bit pixels in row-major HWC order. Greyscale images have one channel
 * (height * width bytes), colour images three in RGB order.
 */
export interface DecodedImage {
  data: Uint8Array;
  height: number;
  width: number;
  channels: 1 | 3;
}

/** An image that could not be read or decoded; `path` is the file path or the caller's label. */
export class ImageDecodeError extends Error {
  readonly path: string;
  readonly reason: string;

  constructor(path: string, reason: string, options?: ErrorOptions) {
    super(`${path}: ${reason}`, options);
    this.name = 'ImageDecodeError';
    this.path = path;
    this.reason = reason;
  }
}

/** File extensions (lower-case, with the dot) of the formats decodeImage reads. */
export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set([
  '.jpg',
  '.jpeg',
  '.png',
  '.webp',
  '.bmp',
  '.gif',
  '.tif',
  '.tiff',
  '.avif',
]);

/** Largest input accepted, in pixels: sharp's default limitInputPixels (16383 x 16383). */
const MAX_IMAGE_PIXELS = 0x3fff * 0x3fff;

/** Largest width or height accepted: the largest a JPEG header can store. */
const MAX_IMAGE_SIDE = 0xffff;

/** Largest output width or height that decodeImage accepts in DecodeOptions.size. */
const MAX_OUTPUT_SIDE = 16384;

const FITS: ReadonlySet<string> = new Set<ResizeFit>(['fill', 'cover', 'contain']);

const BLACK = { r: 0, g: 0, b: 0, alpha: 1 };

const BUFFER_LABEL = '<buffer>';

/**
 * Decodes an image and resizes it to `options.size`.
 *
 * EXIF orientation is applied, alpha is flattened onto black, 16-bit samples
 * are scaled to 8 bits, and CMYK and palette images are converted to sRGB.
 * Animated GIF, WebP and multi-page TIFF files give their first frame.
 * The result has one channel when every pixel of the resized image has
 * R = G = B, otherwise three (RGB).
 *
 * `label` names the source in errors; it defaults to the path, or to
 * "<buffer>" for a Buffer. Throws ImageDecodeError for unreadable, corrupt or
 * unsupported input, and RangeError for invalid options.
 */
export async function decodeImage(
  source: string | Buffer,
  options: DecodeOptions,
  label?: string,
): Promise<DecodedImage> {
  const [height, width] = validateSize(options.size);
  const fit = options.fit ?? 'fill';
  if (!FITS.has(fit)) {
    throw new RangeError(`fit must be 'fill', 'cover' or 'contain'; got ${JSON.stringify(fit)}`);
  }

  const name = label ?? (typeof source === 'string' ? source : BUFFER_LABEL);
  const bytes = typeof source === 'string' ? await readImageFile(source, name) : source;
  const rgb = await decodeToRgb(bytes, name, { height, width, fit });

  if (isGreyscale(rgb.data)) {
    return { data: firstChannel(rgb.data), height: rgb.height, width: rgb.width, channels: 1 };
  }
  return { ...rgb, channels: 3 };
}

/**
 * Decodes an image at full resolution into 8-bit RGB (HWC), with EXIF
 * orientation applied and alpha flattened onto black. Greyscale images are
 * returned with the grey value in all three channels. Errors are as for
 * decodeImage.
 */
export async function readImageRgb(
  source: string | Buffer,
  label?: string,
): Promise<{ data: Uint8Array; height: number; width: number }> {
  const name = label ?? (typeof source === 'string' ? source : BUFFER_LABEL);
  const bytes = typeof source === 'string' ? await readImageFile(source, name) : source;
  return decodeToRgb(bytes, name, undefined);
}

function validateSize(size: DecodeOptions['size']): [number, number] {
  const [height, width] = typeof size === 'number' ? [size, size] : size;
  const valid = (side: number): boolean => Number.isInteger(side) && side >= 1 && side <= MAX_OUTPUT_SIDE;
  if (!valid(height) || !valid(width)) {
    throw new RangeError(
      `size must be an integer or [height, width] of integers from 1 to ${MAX_OUTPUT_SIDE}; ` +
        `got ${JSON.stringify(size)}`,
    );
  }
  return [height, width];
}

async function readImageFile(path: string, name: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reasons: Record<string, string> = {
      ENOENT: 'file not found',
      EISDIR: 'is a directory, not an image file',
      EACCES: 'permission denied; check the file permissions',
      EPERM: 'permission denied; check the file permissions',
    };
    const reason = (code && reasons[code]) ?? `cannot read the file (${(error as Error).message})`;
    throw new ImageDecodeError(name, reason, { cause: error });
  }
}

interface ResizeTarget {
  height: number;
  width: number;
  fit: ResizeFit;
}

interface RgbImage {
  data: Uint8Array;
  height: number;
  width: number;
}

/**
 * Runs one sharp pipeline from encoded bytes to 8-bit RGB, resized when
 * `target` is given. Only TIFF and HEIF/AVIF need a metadata read first, to
 * find their bit depth; PNG's depth is read from its header.
 */
async function decodeToRgb(bytes: Buffer, name: string, target: ResizeTarget | undefined): Promise<RgbImage> {
  if (bytes.length === 0) {
    throw new ImageDecodeError(name, 'empty file');
  }
  const format = sniffFormat(bytes, name);

  let image: sharp.Sharp;
  let sixteenBit = false;
  if (format === 'BMP') {
    const pixels = decodeBmpOrThrow(bytes, name);
    if (target === undefined && pixels.channels === 3) {
      return { data: pixels.data, height: pixels.height, width: pixels.width };
    }
    image = sharp(pixels.data, {
      raw: { width: pixels.width, height: pixels.height, channels: pixels.channels },
      limitInputPixels: MAX_IMAGE_PIXELS,
    });
  } else {
    image = sharp(bytes, {
      // 'error' rejects truncated JPEG, PNG and GIF data instead of returning
      // a partly grey image. Unlike sharp's default 'warning', it accepts
      // JPEGs that only raise libjpeg warnings such as "extraneous bytes
      // before marker".
      failOn: 'error',
      autoOrient: true,
      limitInputPixels: MAX_IMAGE_PIXELS,
    });
    if (format === 'PNG') {
      sixteenBit = pngIs16Bit(bytes, name);
    } else if (format === 'TIFF' || format === 'AVIF') {
      const metadata = await image.metadata().catch((error: unknown) => {
        throw sharpError(error, name, format);
      });
      sixteenBit = metadata.depth === 'ushort';
    }
  }

  // Alpha is composited onto black. Keras's load_img calls PIL's
  // convert('RGB'), which drops alpha and shows a transparent pixel's stored
  // colour. That colour is usually zero, so typical files match Keras, but
  // partly transparent pixels come out darker here than in Keras.
  image.flatten({ background: BLACK });
  if (target !== undefined) {
    image.resize({ width: target.width, height: target.height, fit: target.fit, background: BLACK });
  }
  // sharp 0.34.5 reduces 16-bit samples to 8 bits by dropping the low byte
  // (200 -> 0 instead of round(200 / 257) = 1, 60000 -> 234 instead of 233),
  // so 16-bit images are read as 16 bits and scaled by scale16To8.
  if (sixteenBit) {
    image.toColourspace('rgb16').raw({ depth: 'ushort' });
  } else {
    image.toColourspace('srgb').raw();
  }

  let output: { data: Buffer; info: sharp.OutputInfo };
  try {
    output = await image.toBuffer({ resolveWithObject: true });
  } catch (error) {
    throw sharpError(error, name, format);
  }

  const { data, info } = output;
  if (info.channels !== 3) {
    throw new ImageDecodeError(name, `sharp returned ${info.channels} channels instead of 3 for a ${format} image`);
  }
  const pixels = sixteenBit ? scale16To8(data) : new Uint8Array(data.buffer, data.byteOffset, data.length);
  return { data: pixels, height: info.height, width: info.width };
}

function decodeBmpOrThrow(bytes: Buffer, name: string): ReturnType<typeof decodeBmp> {
  try {
    return decodeBmp(bytes, { maxSide: MAX_IMAGE_SIDE, maxPixels: MAX_IMAGE_PIXELS });
  } catch (error) {
    if (error instanceof BmpFormatError) {
      throw new ImageDecodeError(name, error.message, { cause: error });
    }
    throw error;
  }
}

type SupportedFormat = 'JPEG' | 'PNG' | 'WebP' | 'GIF' | 'TIFF' | 'AVIF' | 'BMP';

/**
 * Identifies the format from its signature bytes, whatever the file
 * extension. Throws ImageDecodeError for content that is not one of the
 * supported formats, naming the format when it is a known image type.
 */
function sniffFormat(bytes: Buffer, name: string): SupportedFormat {
  const startsWith = (signature: number[] | string, offset = 0): boolean => {
    const expected = typeof signature === 'string' ? Buffer.from(signature, 'latin1') : Buffer.from(signature);
    return bytes.length >= offset + expected.length && bytes.subarray(offset, offset + expected.length).equals(expected);
  };

  if (startsWith([0xff, 0xd8, 0xff])) return 'JPEG';
  if (startsWith([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return 'PNG';
  if (startsWith('RIFF') && startsWith('WEBP', 8)) return 'WebP';
  if (startsWith('GIF87a') || startsWith('GIF89a')) return 'GIF';
  if (startsWith([0x49, 0x49, 0x2a, 0x00]) || startsWith([0x4d, 0x4d, 0x00, 0x2a])) return 'TIFF';
  if (isBmp(bytes)) return 'BMP';

  if (startsWith('ftyp', 4)) {
    const brands = isoMediaBrands(bytes);
    if (brands.includes('avif') || brands.includes('avis')) return 'AVIF';
    if (brands.some((brand) => ['heic', 'heix', 'heim', 'heis', 'hevc', 'hevx', 'mif1'].includes(brand))) {
      // The libheif bundled with sharp decodes AV1 (AVIF) only, not HEVC.
      throw unsupported(name, 'HEIC/HEIF (HEVC-coded)');
    }
    throw new ImageDecodeError(name, `not an image (ISO media file of type '${brands[0]}', such as a video)`);
  }

  const known: [string, number[] | string][] = [
    ['Photoshop PSD', '8BPS'],
    ['JPEG XL', [0xff, 0x0a]],
    ['JPEG XL', [0, 0, 0, 0x0c, 0x4a, 0x58, 0x4c, 0x20]],
    ['JPEG 2000', [0, 0, 0, 0x0c, 0x6a, 0x50, 0x20, 0x20]],
    ['JPEG 2000', [0xff, 0x4f, 0xff, 0x51]],
    ['Windows icon (ICO)', [0, 0, 1, 0]],
    ['PDF', '%PDF-'],
    ['OpenEXR', [0x76, 0x2f, 0x31, 0x01]],
  ];
  for (const [format, signature] of known) {
    if (startsWith(signature)) throw unsupported(name, format);
  }

  const head = bytes.subarray(0, 512).toString('latin1');
  if (/^\s*(<\?xml[^>]*>\s*)?<svg[\s>]/i.test(head)) throw unsupported(name, 'SVG (vector image)');
  if (/^P[1-7]\s/.test(head)) throw unsupported(name, 'Netpbm (PBM/PGM/PPM)');
  if (head.startsWith('version https://git-lfs.github.com/spec/')) {
    throw new ImageDecodeError(name, 'not an image (Git LFS pointer file); fetch the real file with "git lfs pull"');
  }
  throw new ImageDecodeError(name, 'not an image (unrecognised content)' + describeText(head));
}

function unsupported(name: string, format: string): ImageDecodeError {
  return new ImageDecodeError(name, `unsupported image format ${format}; convert the file to PNG or JPEG`);
}

/** Major and compatible brands of an ISO base media file (MP4, HEIF, AVIF) from its ftyp box. */
function isoMediaBrands(bytes: Buffer): string[] {
  const boxEnd = Math.min(bytes.readUInt32BE(0), bytes.length, 256);
  const brands = [bytes.toString('latin1', 8, 12)];
  for (let offset = 16; offset + 4 <= boxEnd; offset += 4) {
    brands.push(bytes.toString('latin1', offset, offset + 4));
  }
  return brands;
}

/** Describes the start of a file whose first line is printable text, such as an HTML error page. */
function describeText(head: string): string {
  const firstLine = head.split(/\r?\n/, 1)[0].trim();
  if (firstLine.length === 0 || !/^[\x20-\x7e\t]+$/.test(firstLine)) {
    return '';
  }
  const excerpt = firstLine.length > 60 ? `${firstLine.slice(0, 60)}...` : firstLine;
  return `; the file starts with the text ${JSON.stringify(excerpt)}`;
}

/**
 * Reads the PNG header's size and bit depth, rejecting zero or oversized
 * dimensions before sharp allocates anything.
 */
function pngIs16Bit(bytes: Buffer, name: string): boolean {
  if (bytes.length < 33 || bytes.toString('latin1', 12, 16) !== 'IHDR') {
    throw new ImageDecodeError(name, 'truncated or corrupt PNG data (the IHDR header chunk is missing)');
  }
  const width = bytes.readUInt32BE(16);
  const height = bytes.readUInt32BE(20);
  if (width === 0 || height === 0) {
    throw new ImageDecodeError(name, `invalid PNG dimensions ${width}x${height}: width and height must be non-zero`);
  }
  if (width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE || width * height > MAX_IMAGE_PIXELS) {
    throw new ImageDecodeError(name, tooLargeReason(`${width}x${height}`));
  }
  return bytes[24] === 16;
}

function tooLargeReason(dimensions: string): string {
  return (
    `image dimensions ${dimensions} exceed the limit of ${MAX_IMAGE_SIDE} pixels a side ` +
    `and ${MAX_IMAGE_PIXELS} pixels in total`
  );
}

/** Maps a sharp/libvips error to an ImageDecodeError with a plain reason and the libvips message. */
function sharpError(error: unknown, name: string, format: SupportedFormat): ImageDecodeError {
  const message = error instanceof Error ? error.message : String(error);
  let reason: string;
  if (/exceeds pixel limit/i.test(message)) {
    reason = tooLargeReason('in the header');
  } else if (/Empty JPEG image|invalid image (width|height)/i.test(message)) {
    reason = `invalid ${format} dimensions: the header gives a zero width or height (${message})`;
  } else {
    reason = `truncated or corrupt ${format} data (${message})`;
  }
  return new ImageDecodeError(name, reason, { cause: error });
}

/** Converts 16-bit samples to 8 bits as round(v / 257), so 65535 maps to 255. */
function scale16To8(data: Buffer): Uint8Array {
  // sharp's output buffers are freshly allocated, but a Uint16Array view
  // needs an even byte offset, so copy in the unlikely odd case.
  const aligned = data.byteOffset % 2 === 0 ? data : Buffer.from(data);
  const samples = new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.length / 2);
  const out = new Uint8Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    // floor((v + 128) / 257) equals round(v / 257) for every 16-bit v.
    out[i] = ((samples[i] + 128) / 257) | 0;
  }
  return out;
}

function isGreyscale(rgb: Uint8Array): boolean {
  for (let i = 0; i < rgb.length; i += 3) {
    if (rgb[i] !== rgb[i + 1] || rgb[i] !== rgb[i + 2]) {
      return false;
    }
  }
  return true;
}

function firstChannel(rgb: Uint8Array): Uint8Array {
  const grey = new Uint8Array(rgb.length / 3);
  for (let i = 0; i < grey.length; i++) {
    grey[i] = rgb[i * 3];
  }
  return grey;
}
