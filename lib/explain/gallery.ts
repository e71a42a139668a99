/**
 * Gallery sheets: a title, then a grid of tiles, each the face beside its
 * heatmap overlay with caption lines below, composed and encoded by sharp.
 * Text is drawn through an SVG layer, which sharp renders with librsvg and
 * the system's fonts.
 */
import sharp from 'sharp';

import type { RgbImage } from './overlay';

export interface GalleryTile {
  /** The face as shown, tileSize x tileSize. */
  image: RgbImage;
  /** The overlay, tileSize x tileSize. */
  overlay: RgbImage;
  caption: string[];
}

export interface GalleryLayout {
  /** Tiles per row; default 4. */
  columns?: number;
  /** Side of each image in pixels; every tile's image and overlay must have this size. */
  tileSize: number;
  /** Caption lines under each tile; default 4. */
  captionLines?: number;
  fontSize?: number;
}

const FONT_FAMILY = 'DejaVu Sans, Liberation Sans, Arial, sans-serif';
const PADDING = 10;
const GAP = 4;

export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c] as string);
}

function textElement(x: number, y: number, text: string, size: number, weight = 'normal'): string {
  return `<text x="${x}" y="${y}" font-family="${FONT_FAMILY}" font-size="${size}" font-weight="${weight}" fill="#111">${escapeXml(text)}</text>`;
}

/**
 * Composes a gallery and writes it as PNG. `title` lines head the sheet, and
 * a sheet without tiles shows a notice below the title. `description` goes
 * into the PNG's EXIF ImageDescription tag.
 */
export async function writeGallery(
  file: string,
  title: string[],
  tiles: readonly GalleryTile[],
  layout: GalleryLayout,
  description?: string,
): Promise<{ width: number; height: number }> {
  const columns = layout.columns ?? 4;
  const size = layout.tileSize;
  const fontSize = layout.fontSize ?? Math.max(10, Math.min(14, Math.round(size / 11)));
  const lineHeight = Math.round(fontSize * 1.3);
  const captionLines = layout.captionLines ?? 4;
  if (!Number.isInteger(columns) || columns < 1) {
    throw new RangeError(`Invalid gallery column count ${columns}: expected an integer >= 1.`);
  }
  for (const tile of tiles) {
    for (const part of [tile.image, tile.overlay]) {
      if (part.width !== size || part.height !== size) {
        throw new RangeError(`Gallery tile image of ${part.width}x${part.height} pixels does not match the tile size ${size}.`);
      }
    }
  }

  const cellWidth = 2 * size + GAP;
  const cellHeight = size + captionLines * lineHeight + PADDING;
  const titleFont = fontSize + 2;
  const titleHeight = PADDING + title.length * Math.round(titleFont * 1.35) + PADDING;
  const rows = Math.ceil(tiles.length / columns);
  // DejaVu Sans averages about 0.6 em per character; the sheet widens so that no title line is cut.
  const titleWidth = PADDING * 2 + Math.ceil(Math.max(0, ...title.map((line) => line.length)) * titleFont * 0.6);
  const gridWidth = PADDING * 2 + Math.min(columns, Math.max(1, tiles.length)) * (cellWidth + PADDING) - PADDING;
  const width = Math.max(gridWidth, titleWidth);
  // An empty gallery keeps one text line for its notice.
  const height = titleHeight + (rows > 0 ? rows * (cellHeight + PADDING) : lineHeight + PADDING) + PADDING;

  const texts: string[] = [];
  title.forEach((line, i) => {
    texts.push(textElement(PADDING, PADDING + (i + 1) * Math.round(titleFont * 1.35) - 4, line, titleFont, i === 0 ? 'bold' : 'normal'));
  });
  if (tiles.length === 0) {
    texts.push(textElement(PADDING, titleHeight + lineHeight, 'No images in this category.', fontSize));
  }

  const layers: sharp.OverlayOptions[] = [];
  tiles.forEach((tile, index) => {
    const left = PADDING + (index % columns) * (cellWidth + PADDING);
    const top = titleHeight + Math.floor(index / columns) * (cellHeight + PADDING);
    layers.push({ input: Buffer.from(tile.image.data), raw: { width: size, height: size, channels: 3 }, left, top });
    layers.push({ input: Buffer.from(tile.overlay.data), raw: { width: size, height: size, channels: 3 }, left: left + size + GAP, top });
    tile.caption.slice(0, captionLines).forEach((line, i) => {
      texts.push(textElement(left, top + size + (i + 1) * lineHeight - 3, line, fontSize));
    });
  });
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${texts.join('')}</svg>`;
  layers.push({ input: Buffer.from(svg), left: 0, top: 0 });

  let pipeline = sharp({ create: { width, height, channels: 3, background: { r: 255, g: 255, b: 255 } } })
    .composite(layers)
    .png();
  if (description !== undefined) {
    pipeline = pipeline.withExif({ IFD0: { ImageDescription: description } });
  }
  await pipeline.toFile(file);
  return { width, height };
}
