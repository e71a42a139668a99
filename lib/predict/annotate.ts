/** Annotated copies of photos: a box and a "label 0.87" caption per face, drawn as an SVG overlay composited by sharp. */
import sharp from 'sharp';

import { CANONICAL_CLASSES } from '../classes';
import type { RgbImage } from './detect';
import type { Box } from './faceapi';

/** Box and caption colour of each canonical class, in CANONICAL_CLASSES order. */
const CLASS_COLOURS = ['#e6194b', '#3cb44b', '#911eb4', '#ffe119', '#4363d8', '#42d4f4', '#f58231'];

export interface Annotation {
  box: Box;
  caption: string;
  /** Index into CANONICAL_CLASSES; selects the colour. */
  classIndex: number;
}

export const ANNOTATION_FORMATS = ['jpeg', 'png', 'webp'] as const;
export type AnnotationFormat = (typeof ANNOTATION_FORMATS)[number];

export interface AnnotateOptions {
  /** Maximum length of the output's longer side in pixels; 0 keeps the image's size. Default 1280. */
  maxSide?: number;
  format?: AnnotationFormat;
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c] as string);
}

/** Black or white, whichever reads better on the given #rrggbb background (by relative luminance). */
function textColour(background: string): string {
  const value = Number.parseInt(background.slice(1), 16);
  const luminance = 0.2126 * ((value >> 16) & 255) + 0.7152 * ((value >> 8) & 255) + 0.0722 * (value & 255);
  return luminance > 140 ? '#000000' : '#ffffff';
}

/**
 * Builds the SVG overlay for an image of width x height output pixels; boxes
 * are in source pixels and are scaled by `scale`. Line width and font size
 * grow with the image, so that captions stay readable on large photos.
 */
export function annotationSvg(annotations: readonly Annotation[], width: number, height: number, scale: number): string {
  const longest = Math.max(width, height);
  const stroke = Math.max(2, Math.round(longest / 400));
  const fontSize = Math.max(12, Math.round(longest / 55));
  const captionHeight = Math.round(fontSize * 1.35);
  const parts: string[] = [];
  for (const annotation of annotations) {
    const colour = CLASS_COLOURS[annotation.classIndex] ?? '#ffffff';
    const x = annotation.box.x * scale;
    const y = annotation.box.y * scale;
    const w = annotation.box.width * scale;
    const h = annotation.box.height * scale;
    const inset = stroke / 2;
    parts.push(
      `<rect x="${(x + inset).toFixed(1)}" y="${(y + inset).toFixed(1)}" width="${Math.max(1, w - stroke).toFixed(1)}" ` +
        `height="${Math.max(1, h - stroke).toFixed(1)}" fill="none" stroke="${colour}" stroke-width="${stroke}"/>`,
    );
    // DejaVu Sans averages about 0.6 em per character, which sizes the caption background.
    const captionWidth = Math.round(annotation.caption.length * fontSize * 0.6 + fontSize * 0.6);
    const captionX = Math.min(Math.max(0, x), Math.max(0, width - captionWidth));
    // Above the box when there is room, otherwise inside its top edge.
    const captionY = y - captionHeight >= 0 ? y - captionHeight : y;
    parts.push(
      `<rect x="${captionX.toFixed(1)}" y="${captionY.toFixed(1)}" width="${captionWidth}" height="${captionHeight}" fill="${colour}"/>`,
      `<text x="${(captionX + fontSize * 0.3).toFixed(1)}" y="${(captionY + captionHeight * 0.78).toFixed(1)}" ` +
        `font-family="DejaVu Sans, Arial, sans-serif" font-size="${fontSize}" fill="${textColour(colour)}">${escapeXml(annotation.caption)}</text>`,
    );
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${parts.join('')}</svg>`;
}

/** Writes the image with its annotations drawn on, scaled down to options.maxSide. */
export async function writeAnnotatedImage(file: string, image: RgbImage, annotations: readonly Annotation[], options: AnnotateOptions = {}): Promise<void> {
  const maxSide = options.maxSide ?? 1280;
  if (!Number.isInteger(maxSide) || maxSide < 0) {
    throw new RangeError(`Invalid annotation size ${maxSide}: expected 0 (original size) or a positive number of pixels.`);
  }
  const longest = Math.max(image.width, image.height);
  const scale = maxSide > 0 && longest > maxSide ? maxSide / longest : 1;
  const width = Math.max(1, Math.round(image.width * scale));
  const height = Math.max(1, Math.round(image.height * scale));

  let pipeline = sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } });
  if (scale !== 1) {
    pipeline = pipeline.resize({ width, height, fit: 'fill' });
  }
  // Compositing needs the resized pixels first: sharp applies composite after resize within one pipeline.
  pipeline = pipeline.composite([{ input: Buffer.from(annotationSvg(annotations, width, height, scale)), top: 0, left: 0 }]);
  switch (options.format ?? 'jpeg') {
    case 'jpeg':
      pipeline = pipeline.jpeg({ quality: 85, mozjpeg: true });
      break;
    case 'png':
      pipeline = pipeline.png({ compressionLevel: 9 });
      break;
    case 'webp':
      pipeline = pipeline.webp({ quality: 85 });
      break;
  }
  await pipeline.toFile(file);
}

/** Caption of one face: the top class and its probability, e.g. "happiness 0.87". */
export function faceCaption(classIndex: number, confidence: number, suffix = ''): string {
  return `${CANONICAL_CLASSES[classIndex] ?? '?'} ${confidence.toFixed(2)}${suffix}`;
}
