/**
 * Dataset views for the dataset notebook: a sample grid per class, image
 * sizes and formats, and the files shared between splits.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import sharp from 'sharp';

import { CANONICAL_CLASSES } from '../classes';
import { classCounts, type DiscoveredDataset, type ImageRecord, type SplitName } from '../data/dataset';
import type { DuplicateReport } from '../data/duplicates';
import { escapeXml } from '../explain/gallery';
import { stratifiedSubset } from '../train/data';
import { Rng } from '../util/rng';
import type { TableRow } from './display';

const FONT_FAMILY = 'DejaVu Sans, Liberation Sans, Arial, sans-serif';

export interface SampleGridOptions {
  /** Images per class (one row each); default 8. */
  perClass?: number;
  /** Side of each shown image in pixels; default 72. */
  tileSize?: number;
  /** Chooses the images; default 0. */
  seed?: number;
  title?: string;
}

/**
 * Writes a PNG with one row per class of randomly chosen images (seeded),
 * the class name and its image count at the left of each row. Returns the
 * number of images shown.
 */
export async function writeSampleGrid(records: readonly ImageRecord[], file: string, options: SampleGridOptions = {}): Promise<number> {
  const perClass = options.perClass ?? 8;
  const size = options.tileSize ?? 72;
  if (!Number.isInteger(perClass) || perClass < 1 || !Number.isInteger(size) || size < 8) {
    throw new RangeError(`Invalid sample grid: perClass ${perClass} must be an integer >= 1 and tileSize ${size} an integer >= 8.`);
  }
  const rng = new Rng(options.seed ?? 0, 0x5a3);
  const labelWidth = 150;
  const gap = 4;
  const titleHeight = options.title === undefined ? 8 : 36;
  const width = labelWidth + perClass * (size + gap) + gap;
  const height = titleHeight + CANONICAL_CLASSES.length * (size + gap) + gap;

  const layers: sharp.OverlayOptions[] = [];
  const texts: string[] = [];
  if (options.title !== undefined) {
    texts.push(`<text x="8" y="24" font-family="${FONT_FAMILY}" font-size="16" font-weight="bold" fill="#111">${escapeXml(options.title)}</text>`);
  }
  let shown = 0;
  for (const [label, className] of CANONICAL_CLASSES.entries()) {
    const ofClass = records.filter((record) => record.label === label);
    const top = titleHeight + label * (size + gap);
    texts.push(
      `<text x="8" y="${top + size / 2}" font-family="${FONT_FAMILY}" font-size="14" fill="#111">${escapeXml(className)}</text>` +
        `<text x="8" y="${top + size / 2 + 18}" font-family="${FONT_FAMILY}" font-size="12" fill="#555">${ofClass.length.toLocaleString('en-US')} images</text>`,
    );
    // Partial Fisher-Yates: the first perClass places get a seeded random choice.
    const chosen = [...ofClass];
    for (let i = 0; i < Math.min(perClass, chosen.length); i++) {
      const j = i + Math.floor(rng.next() * (chosen.length - i));
      [chosen[i], chosen[j]] = [chosen[j] as ImageRecord, chosen[i] as ImageRecord];
    }
    for (const [column, record] of chosen.slice(0, perClass).entries()) {
      const tile = await sharp(record.path).rotate().flatten({ background: '#000000' }).resize(size, size, { fit: 'fill' }).removeAlpha().png().toBuffer();
      layers.push({ input: tile, left: labelWidth + gap + column * (size + gap), top });
      shown++;
    }
  }
  layers.push({ input: Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${texts.join('')}</svg>`), left: 0, top: 0 });
  await fs.promises.mkdir(path.dirname(file), { recursive: true });
  await sharp({ create: { width, height, channels: 3, background: { r: 255, g: 255, b: 255 } } })
    .composite(layers)
    .png()
    .toFile(file);
  return shown;
}

/** Count of images with one size and format in one split. */
export interface ImageSizeRow extends TableRow {
  split: string;
  width: number;
  height: number;
  channels: number;
  format: string;
  images: number;
}

/**
 * Reads the header of each image (at most `limit` per split, drawn per class
 * in proportion with `seed`) and counts images per split, size, channel count
 * and format, most frequent first. Unreadable files count as format
 * "unreadable" with size 0x0.
 */
export async function imageSizeTable(
  splits: Partial<Record<SplitName, readonly ImageRecord[]>>,
  options: { limit?: number; seed?: number } = {},
): Promise<ImageSizeRow[]> {
  const rows: ImageSizeRow[] = [];
  for (const [split, records] of Object.entries(splits) as Array<[SplitName, readonly ImageRecord[]]>) {
    const chosen = stratifiedSubset(records, options.limit, options.seed ?? 0, 7);
    const counts = new Map<string, ImageSizeRow>();
    for (const record of chosen) {
      let key: { width: number; height: number; channels: number; format: string };
      try {
        const meta = await sharp(record.path).metadata();
        key = { width: meta.width ?? 0, height: meta.height ?? 0, channels: meta.channels ?? 0, format: meta.format ?? 'unknown' };
      } catch {
        key = { width: 0, height: 0, channels: 0, format: 'unreadable' };
      }
      const id = `${key.width}x${key.height}x${key.channels}:${key.format}`;
      const row = counts.get(id) ?? { split, ...key, images: 0 };
      row.images++;
      counts.set(id, row);
    }
    rows.push(...[...counts.values()].sort((a, b) => b.images - a.images));
  }
  return rows;
}

const SPLIT_ORDER: readonly SplitName[] = ['train', 'validation', 'test'];

/** Returns the dataset's split names in the order train, validation, test. */
export function splitNames(dataset: DiscoveredDataset): SplitName[] {
  return SPLIT_ORDER.filter((split) => dataset.splits[split] !== undefined);
}

/** Keeps at most `limit` images of each split, drawn per class in proportion with `seed`; no limit keeps every image. */
export function sampleSplits(
  splits: Partial<Record<SplitName, readonly ImageRecord[]>>,
  limit: number | undefined,
  seed = 0,
): Partial<Record<SplitName, ImageRecord[]>> {
  return Object.fromEntries(Object.entries(splits).map(([split, records]) => [split, stratifiedSubset(records ?? [], limit, seed, 11)]));
}

/** Images per class and split, one row per class: { class, train: count, validation: count, test: count }. */
export function classCountRows(dataset: DiscoveredDataset): TableRow[] {
  const counts = splitNames(dataset).map((split) => [split, classCounts(dataset.splits[split] ?? [])] as const);
  return CANONICAL_CLASSES.map((className, label) => ({
    class: className,
    ...Object.fromEntries(counts.map(([split, perClass]) => [split, perClass[label] ?? 0])),
  }));
}

/** Returns one row per group of identical files found in more than one split: its splits, labels and paths (relative to `root`). */
export function duplicateRows(report: DuplicateReport, root: string, limit = 20): TableRow[] {
  return report.crossSplit.slice(0, limit).map((group) => ({
    sha256: group.sha256.slice(0, 12),
    files: group.files.length,
    splits: [...new Set(group.files.map((f) => f.split))].join(', '),
    labels: [...new Set(group.files.map((f) => CANONICAL_CLASSES[f.label]))].join(', '),
    paths: group.files.map((f) => path.relative(root, f.path)).join('; '),
  }));
}
