/**
 * Decoder for uncompressed Windows BMP files, because the libvips build bundled
 * with sharp 0.34 has no BMP loader.
 *
 * Supported:
 * - headers: BITMAPCOREHEADER (12 bytes), BITMAPINFOHEADER (40) and V2 to V5
 *   (52, 56, 108, 124 bytes);
 * - pixels: 1-, 2-, 4- and 8-bit palette, 24-bit BI_RGB, and 16- and 32-bit
 *   BI_RGB, BI_BITFIELDS or BI_ALPHABITFIELDS;
 * - bottom-up (positive height) and top-down (negative height) rows.
 *
 * RLE4/RLE8, embedded JPEG/PNG, CMYK variants, 64-bit pixels and the OS/2 2.x
 * headers are rejected with a BmpFormatError.
 */

/** Decoded BMP pixels, row-major from the top-left, RGB or RGBA (HWC). */
export interface BmpPixels {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 3 | 4;
}

export interface BmpLimits {
  /** Maximum width or height in pixels. */
  maxSide: number;
  /** Maximum width times height. */
  maxPixels: number;
}

/** A BMP file that is malformed or uses a variant this decoder does not support. */
export class BmpFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BmpFormatError';
  }
}

const FILE_HEADER_SIZE = 14;

const BI_RGB = 0;
const BI_RLE8 = 1;
const BI_RLE4 = 2;
const BI_BITFIELDS = 3;
const BI_JPEG = 4;
const BI_PNG = 5;
const BI_ALPHABITFIELDS = 6;

const UNSUPPORTED_COMPRESSION: Readonly<Record<number, string>> = {
  [BI_RLE8]: 'RLE8-compressed (BI_RLE8)',
  [BI_RLE4]: 'RLE4-compressed (BI_RLE4)',
  [BI_JPEG]: 'JPEG-in-BMP (BI_JPEG)',
  [BI_PNG]: 'PNG-in-BMP (BI_PNG)',
  11: 'CMYK (BI_CMYK)',
  12: 'CMYK RLE8 (BI_CMYKRLE8)',
  13: 'CMYK RLE4 (BI_CMYKRLE4)',
};

const CONVERT_HINT = 'convert the file to PNG (for example with ImageMagick: magick in.bmp out.png)';

/** Returns true when the bytes start with the "BM" signature of a Windows bitmap. */
export function isBmp(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x42 && bytes[1] === 0x4d;
}

interface BmpHeader {
  pixelOffset: number;
  headerSize: number;
  width: number;
  height: number;
  topDown: boolean;
  bitsPerPixel: number;
  compression: number;
  colorsUsed: number;
}

interface ChannelMask {
  mask: number;
  shift: number;
  /** Largest value the field can hold, (1 << bits) - 1. */
  max: number;
}

/**
 * Decodes a BMP file into 8-bit RGB, or RGBA when BI_BITFIELDS declares an
 * alpha mask. Throws BmpFormatError naming the problem for malformed,
 * truncated, oversized or unsupported files.
 */
export function decodeBmp(bytes: Uint8Array, limits: BmpLimits): BmpPixels {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const header = readHeader(view, limits);
  const { width, height, bitsPerPixel, compression } = header;

  if (compression in UNSUPPORTED_COMPRESSION) {
    throw new BmpFormatError(`${UNSUPPORTED_COMPRESSION[compression]} BMP is not supported; ${CONVERT_HINT}`);
  }
  if (![1, 2, 4, 8, 16, 24, 32].includes(bitsPerPixel)) {
    throw new BmpFormatError(`${bitsPerPixel}-bit BMP is not supported; ${CONVERT_HINT}`);
  }

  const stride = Math.floor((bitsPerPixel * width + 31) / 32) * 4;
  // The last row's padding is often missing from files written by lenient
  // encoders, so only its pixel bytes are required.
  const lastRowBytes = Math.ceil((bitsPerPixel * width) / 8);
  const required = header.pixelOffset + stride * (height - 1) + lastRowBytes;
  if (header.pixelOffset < FILE_HEADER_SIZE + header.headerSize) {
    throw new BmpFormatError(`invalid BMP: pixel data offset ${header.pixelOffset} points inside the headers`);
  }
  if (required > bytes.length) {
    throw new BmpFormatError(
      `truncated BMP pixel data: ${width}x${height} at ${bitsPerPixel} bits per pixel needs ` +
        `${required} bytes, the file has ${bytes.length}`,
    );
  }

  const rowStart = (y: number): number =>
    header.pixelOffset + stride * (header.topDown ? y : height - 1 - y);

  if (bitsPerPixel <= 8) {
    if (compression !== BI_RGB) {
      throw new BmpFormatError(
        `invalid BMP: compression ${compression} with ${bitsPerPixel} bits per pixel; palette images must be BI_RGB`,
      );
    }
    const palette = readPalette(bytes, header);
    return decodePaletted(bytes, header, palette, rowStart);
  }
  if (bitsPerPixel === 24) {
    if (compression !== BI_RGB) {
      throw new BmpFormatError(`invalid BMP: compression ${compression} with 24 bits per pixel; expected BI_RGB`);
    }
    return decodeBgr24(bytes, header, rowStart);
  }
  if (bitsPerPixel === 16 || bitsPerPixel === 32) {
    const masks = readMasks(view, header);
    return decodeBitfields(view, header, masks, rowStart);
  }
  throw new BmpFormatError(`${bitsPerPixel}-bit BMP is not supported; ${CONVERT_HINT}`);
}

function readHeader(view: DataView, limits: BmpLimits): BmpHeader {
  if (view.byteLength < FILE_HEADER_SIZE + 4) {
    throw new BmpFormatError(`truncated BMP header: the file has ${view.byteLength} bytes`);
  }
  const pixelOffset = view.getUint32(10, true);
  const headerSize = view.getUint32(14, true);
  if (view.byteLength < FILE_HEADER_SIZE + Math.min(headerSize, 40)) {
    throw new BmpFormatError(`truncated BMP header: the file has ${view.byteLength} bytes`);
  }

  let width: number;
  let rawHeight: number;
  let bitsPerPixel: number;
  let compression = BI_RGB;
  let colorsUsed = 0;

  if (headerSize === 12) {
    // BITMAPCOREHEADER (OS/2 1.x and Windows 2.x): unsigned 16-bit sizes, always bottom-up.
    width = view.getUint16(18, true);
    rawHeight = view.getUint16(20, true);
    bitsPerPixel = view.getUint16(24, true);
  } else if (headerSize === 40 || headerSize === 52 || headerSize === 56 || headerSize === 108 || headerSize === 124) {
    width = view.getInt32(18, true);
    rawHeight = view.getInt32(22, true);
    bitsPerPixel = view.getUint16(28, true);
    compression = view.getUint32(30, true);
    colorsUsed = view.getUint32(46, true);
  } else if (headerSize === 16 || headerSize === 64) {
    throw new BmpFormatError(`OS/2 2.x BMP (${headerSize}-byte header) is not supported; ${CONVERT_HINT}`);
  } else {
    throw new BmpFormatError(`invalid BMP: unknown DIB header size ${headerSize} bytes`);
  }

  const topDown = rawHeight < 0;
  const height = Math.abs(rawHeight);
  if (width <= 0 || height === 0) {
    throw new BmpFormatError(`invalid BMP dimensions ${width}x${rawHeight}: width and height must be non-zero`);
  }
  if (width > limits.maxSide || height > limits.maxSide || width * height > limits.maxPixels) {
    throw new BmpFormatError(
      `BMP dimensions ${width}x${height} exceed the limit of ${limits.maxSide} pixels a side ` +
        `and ${limits.maxPixels} pixels in total`,
    );
  }
  if (topDown && compression !== BI_RGB && compression !== BI_BITFIELDS && compression !== BI_ALPHABITFIELDS) {
    throw new BmpFormatError(`invalid BMP: a top-down image (negative height) cannot use compression ${compression}`);
  }

  return { pixelOffset, headerSize, width, height, topDown, bitsPerPixel, compression, colorsUsed };
}

function readPalette(bytes: Uint8Array, header: BmpHeader): Uint8Array {
  // BITMAPCOREHEADER palettes use 3-byte BGR entries, later headers 4-byte BGRX.
  const entrySize = header.headerSize === 12 ? 3 : 4;
  const maxEntries = 1 << header.bitsPerPixel;
  const entries = header.colorsUsed > 0 ? Math.min(header.colorsUsed, maxEntries) : maxEntries;
  const start = FILE_HEADER_SIZE + header.headerSize;
  if (start + entries * entrySize > bytes.length) {
    throw new BmpFormatError(`truncated BMP colour table: ${entries} entries do not fit in ${bytes.length} bytes`);
  }

  // Indices past the colour table map to black, as in Pillow and browsers.
  const palette = new Uint8Array(maxEntries * 3);
  for (let i = 0; i < entries; i++) {
    const entry = start + i * entrySize;
    palette[i * 3] = bytes[entry + 2];
    palette[i * 3 + 1] = bytes[entry + 1];
    palette[i * 3 + 2] = bytes[entry];
  }
  return palette;
}

function decodePaletted(
  bytes: Uint8Array,
  header: BmpHeader,
  palette: Uint8Array,
  rowStart: (y: number) => number,
): BmpPixels {
  const { width, height, bitsPerPixel } = header;
  const data = new Uint8Array(width * height * 3);
  const pixelsPerByte = 8 / bitsPerPixel;
  const indexMask = (1 << bitsPerPixel) - 1;

  for (let y = 0; y < height; y++) {
    const row = rowStart(y);
    let out = y * width * 3;
    for (let x = 0; x < width; x++) {
      // Pixels are packed from the most significant bits of each byte.
      const byte = bytes[row + Math.floor(x / pixelsPerByte)];
      const shift = 8 - bitsPerPixel * ((x % pixelsPerByte) + 1);
      const index = ((byte >> shift) & indexMask) * 3;
      data[out++] = palette[index];
      data[out++] = palette[index + 1];
      data[out++] = palette[index + 2];
    }
  }
  return { data, width, height, channels: 3 };
}

function decodeBgr24(bytes: Uint8Array, header: BmpHeader, rowStart: (y: number) => number): BmpPixels {
  const { width, height } = header;
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    let source = rowStart(y);
    let out = y * width * 3;
    for (let x = 0; x < width; x++) {
      data[out++] = bytes[source + 2];
      data[out++] = bytes[source + 1];
      data[out++] = bytes[source];
      source += 3;
    }
  }
  return { data, width, height, channels: 3 };
}

/**
 * Reads the red, green, blue and optional alpha masks. BI_RGB uses the fixed
 * masks of the format (5-5-5 for 16-bit, BGRX for 32-bit, no alpha), and any
 * mask fields in a V4/V5 header are ignored, as the format specifies.
 */
function readMasks(view: DataView, header: BmpHeader): ChannelMask[] {
  const { compression, headerSize, bitsPerPixel } = header;
  let values: number[];

  if (compression === BI_RGB) {
    values = bitsPerPixel === 16 ? [0x7c00, 0x03e0, 0x001f] : [0xff0000, 0x00ff00, 0x0000ff];
  } else if (compression === BI_BITFIELDS || compression === BI_ALPHABITFIELDS) {
    // BITMAPINFOHEADER stores the masks right after the header. V2 and later
    // headers contain them (V2: red, green, blue; V3 and later: also alpha).
    const start = FILE_HEADER_SIZE + 40;
    const count = headerSize === 40 ? (compression === BI_ALPHABITFIELDS ? 4 : 3) : headerSize >= 56 ? 4 : 3;
    if (start + count * 4 > view.byteLength) {
      throw new BmpFormatError('truncated BMP header: the BI_BITFIELDS colour masks are missing');
    }
    values = [];
    for (let i = 0; i < count; i++) {
      values.push(view.getUint32(start + i * 4, true));
    }
  } else {
    throw new BmpFormatError(`invalid BMP: unknown compression ${compression}`);
  }

  const masks: ChannelMask[] = [];
  values.forEach((mask, i) => {
    if (mask === 0) {
      if (i < 3) {
        throw new BmpFormatError(`invalid BMP colour masks: the ${['red', 'green', 'blue'][i]} mask is zero`);
      }
      return;
    }
    const shift = 31 - Math.clz32(mask & -mask);
    const shifted = mask >>> shift;
    if ((shifted & (shifted + 1)) !== 0) {
      throw new BmpFormatError(`invalid BMP colour mask 0x${mask.toString(16)}: the set bits must be contiguous`);
    }
    masks.push({ mask, shift, max: shifted });
  });
  return masks;
}

function decodeBitfields(
  view: DataView,
  header: BmpHeader,
  masks: ChannelMask[],
  rowStart: (y: number) => number,
): BmpPixels {
  const { width, height, bitsPerPixel } = header;
  const bytesPerPixel = bitsPerPixel / 8;
  const channels = masks.length === 4 ? 4 : 3;
  const data = new Uint8Array(width * height * channels);
  let alphaSeen = 0;

  for (let y = 0; y < height; y++) {
    let source = rowStart(y);
    let out = y * width * channels;
    for (let x = 0; x < width; x++) {
      const pixel = bytesPerPixel === 4 ? view.getUint32(source, true) : view.getUint16(source, true);
      source += bytesPerPixel;
      for (let c = 0; c < channels; c++) {
        const { mask, shift, max } = masks[c];
        const value = (pixel & mask) >>> shift;
        data[out++] = max === 255 ? value : Math.round((value * 255) / max);
      }
      if (channels === 4) {
        alphaSeen |= data[out - 1];
      }
    }
  }

  // Many writers declare an alpha mask but leave every alpha value at zero.
  // Browsers treat such files as opaque, and so does this decoder, because
  // flattening them would give an all-black image.
  if (channels === 4 && alphaSeen === 0) {
    for (let i = 3; i < data.length; i += 4) {
      data[i] = 255;
    }
  }
  return { data, width, height, channels };
}
