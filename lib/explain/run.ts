/**
 * Explaining a whole split: class activation maps for every image, the
 * attention share of each, the three galleries (correct with focused
 * attention, correct with misplaced attention, misclassified), per-image
 * overlays, and the per-image results as JSON and CSV.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import * as tf from '@tensorflow/tfjs';

import { readImageRgb, type ResizeFit } from '../data/decode';
import { pixelsToTensor, preprocess } from '../data/preprocess';
import type { ImageStore } from '../data/store';
import { writeFileAtomic } from '../models/io';
import type { PreprocessingMode } from '../models/types';
import { ProgressBar } from '../util/progress';
import { attentionShare, categorise, CentralFaceRegion, DEFAULT_FOCUS_THRESHOLD, type AttentionCategory, type FaceRegion } from './attention';
import type { CamMethod, ClassActivationMap } from './cam';
import { writeGallery, type GalleryTile } from './gallery';
import { renderOverlay, writeRgbPng, type ColormapName } from './overlay';

export const ATTENTION_CATEGORIES: readonly AttentionCategory[] = ['correct_focused', 'correct_misplaced', 'misclassified'];

export const METHOD_TITLES: Record<CamMethod, string> = {
  gradcam: 'Grad-CAM',
  'gradcam++': 'Grad-CAM++',
  eigencam: 'Eigen-CAM',
  scorecam: 'Score-CAM',
};

/** Folder-safe method names, used in default output paths. */
export const METHOD_FOLDERS: Record<CamMethod, string> = {
  gradcam: 'gradcam',
  'gradcam++': 'gradcam_plus_plus',
  eigencam: 'eigencam',
  scorecam: 'scorecam',
};

/** One explained image; the map is kept at layer resolution to bound memory. */
export interface ExplainedImage {
  /** Position in the explained store. */
  index: number;
  path: string;
  trueClass: number;
  predictedClass: number;
  /** Probability of the predicted class. */
  confidence: number;
  targetClass: number;
  targetProbability: number;
  /** Share of the heatmap's mass inside the face region; NaN for an empty map. */
  attentionShare: number;
  /** Share of the input the face region covers: what a uniform heatmap would get. */
  regionAreaFraction: number;
  category: AttentionCategory;
  method: CamMethod;
  layerName: string;
  /** Maximum of the map before normalisation; 0 for an empty map. */
  rawMax: number;
  layerMap: Float32Array;
  layerHeight: number;
  layerWidth: number;
}

export interface ExplainStoreOptions {
  preprocessing: PreprocessingMode;
  /** Class index every map explains; default: each image's predicted class. */
  targetClass?: number;
  /** Images per CAM batch; default 16. */
  batchSize?: number;
  /** Default: CentralFaceRegion with its defaults. */
  region?: FaceRegion;
  /** Default: DEFAULT_FOCUS_THRESHOLD. */
  focusThreshold?: number;
  label?: string;
  silent?: boolean;
}

/** Explains every image of the store in order and measures its attention share. */
export async function explainStore(cam: ClassActivationMap, store: ImageStore, options: ExplainStoreOptions): Promise<ExplainedImage[]> {
  const batchSize = options.batchSize ?? 16;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new RangeError(`Invalid batch size ${batchSize}: expected an integer >= 1.`);
  }
  const region = options.region ?? new CentralFaceRegion();
  const threshold = options.focusThreshold ?? DEFAULT_FOCUS_THRESHOLD;
  const progress = new ProgressBar(`explaining ${options.label ?? ''}`.trim(), store.length, { unit: 'img', silent: options.silent ?? false });
  const results: ExplainedImage[] = [];
  for (let start = 0; start < store.length; start += batchSize) {
    const indices = Array.from({ length: Math.min(batchSize, store.length - start) }, (_, i) => start + i);
    const batch = await store.batch(indices);
    const input = tf.tidy(() => preprocess(pixelsToTensor(batch.pixels, batch.count, batch.size), options.preprocessing));
    let explanations;
    try {
      explanations = await cam.explain(input, options.targetClass !== undefined ? { targetClasses: options.targetClass } : {});
    } finally {
      input.dispose();
    }
    explanations.forEach((e, slot) => {
      const index = indices[slot] as number;
      const mask = region.maskFor({ index, path: store.records[index]?.path ?? '' }, e.height, e.width);
      const share = attentionShare(e.heatmap, mask);
      const trueClass = batch.labels[slot] as number;
      results.push({
        index,
        path: store.records[index]?.path ?? '',
        trueClass,
        predictedClass: e.predictedClass,
        confidence: e.probabilities[e.predictedClass] as number,
        targetClass: e.targetClass,
        targetProbability: e.probabilities[e.targetClass] as number,
        attentionShare: share,
        regionAreaFraction: mask.areaFraction,
        category: categorise(trueClass === e.predictedClass, share, threshold),
        method: e.method,
        layerName: e.layerName,
        rawMax: e.rawMax,
        layerMap: e.layerMap,
        layerHeight: e.layerHeight,
        layerWidth: e.layerWidth,
      });
    });
    progress.tick(indices.length);
  }
  progress.finish();
  return results;
}

/**
 * Picks a gallery's tiles: the category's images by confidence, highest
 * first, ties broken by path, so the choice is the same on every run.
 */
export function selectTiles(images: readonly ExplainedImage[], category: AttentionCategory, count: number): ExplainedImage[] {
  return images
    .filter((image) => image.category === category)
    .sort((a, b) => b.confidence - a.confidence || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
    .slice(0, count);
}

/** Facts that every output names: the run, the method and its layer, the region and the threshold. */
export interface ExplainContext {
  runDir: string;
  configuration: string;
  backbone: string;
  method: CamMethod;
  layerName: string;
  /** The layer's output size without the batch: [height, width, channels]. */
  layerShape: [number, number, number];
  /** Whether gradients were taken of the logit or the probability. */
  score: string;
  split: string;
  dataDir: string;
  classNames: readonly string[];
  /** Class every map explains, or undefined for the predicted class. */
  targetClass?: number;
  region: string;
  focusThreshold: number;
  inputSize: number;
  resizeFit: ResizeFit;
}

export interface RenderOptions {
  colormap?: ColormapName;
  /** Heatmap colour weight in the blend, 0 to 1; default 0.4. */
  opacity?: number;
}

export interface GalleryOptions extends RenderOptions {
  /** Tiles per gallery; default 16. */
  tiles?: number;
  /** Tiles per row; default 4. */
  columns?: number;
  /** Side of each tile image in pixels; default 144. */
  tileSize?: number;
}

function formatShare(share: number): string {
  return Number.isNaN(share) ? 'empty map' : share.toFixed(2);
}

/** Builds the text written into each PNG's EXIF ImageDescription. */
function pngDescription(context: ExplainContext, extra = ''): string {
  const target = context.targetClass === undefined ? 'predicted class' : `class ${context.classNames[context.targetClass]}`;
  return `${METHOD_TITLES[context.method]} of the ${target} at layer ${context.layerName} of ${context.configuration} (${context.runDir})${extra}`;
}

function categoryTitle(category: AttentionCategory, threshold: number): string {
  switch (category) {
    case 'correct_focused':
      return `Correct, attention on the face (attention share >= ${threshold})`;
    case 'correct_misplaced':
      return `Correct, attention elsewhere (attention share < ${threshold})`;
    case 'misclassified':
      return 'Misclassified';
  }
}

function tileCaption(image: ExplainedImage, classNames: readonly string[]): string[] {
  const lines = [
    `true: ${classNames[image.trueClass]}`,
    `pred: ${classNames[image.predictedClass]} (${image.confidence.toFixed(2)})`,
    `attention share: ${formatShare(image.attentionShare)}`,
  ];
  if (image.targetClass !== image.predictedClass) {
    lines.push(`map of class: ${classNames[image.targetClass]}`);
  } else {
    const name = path.basename(image.path);
    lines.push(name.length > 34 ? `${name.slice(0, 31)}...` : name);
  }
  return lines;
}

/** Writes the three galleries as <category>.png in `dir`; returns their paths. */
export async function writeGalleries(
  images: readonly ExplainedImage[],
  context: ExplainContext,
  dir: string,
  options: GalleryOptions = {},
): Promise<Record<AttentionCategory, string>> {
  const count = options.tiles ?? 16;
  const size = options.tileSize ?? 144;
  await fs.promises.mkdir(dir, { recursive: true });
  const files = {} as Record<AttentionCategory, string>;
  for (const category of ATTENTION_CATEGORIES) {
    const chosen = selectTiles(images, category, count);
    const total = images.filter((image) => image.category === category).length;
    const tiles: GalleryTile[] = [];
    for (const image of chosen) {
      const original = await readImageRgb(image.path);
      const rendered = await renderOverlay(
        original,
        { data: image.layerMap, height: image.layerHeight, width: image.layerWidth },
        { width: context.inputSize, height: context.inputSize },
        { ...options, fit: context.resizeFit, width: size, height: size },
      );
      tiles.push({ image: rendered.image, overlay: rendered.overlay, caption: tileCaption(image, context.classNames) });
    }
    const [h, w, c] = context.layerShape;
    const target = context.targetClass === undefined ? 'map of the predicted class' : `map of class ${context.classNames[context.targetClass]}`;
    const title = [
      `${categoryTitle(category, context.focusThreshold)}: ${chosen.length} of ${total} shown, highest confidence first`,
      `${context.configuration}, ${context.split} split of ${context.dataDir}; run ${context.runDir}`,
      `${METHOD_TITLES[context.method]} at layer ${context.layerName} (${h}x${w}x${c}), ${target}; face region: ${context.region}`,
    ];
    const file = path.join(dir, `${category}.png`);
    await writeGallery(file, title, tiles, { tileSize: size, ...(options.columns !== undefined ? { columns: options.columns } : {}) }, pngDescription(context));
    files[category] = file;
  }
  return files;
}

/** File name of an image's overlay: its position and original name, so names never collide. */
export function overlayFileName(image: ExplainedImage): string {
  const stem = path.basename(image.path, path.extname(image.path)).replace(/[^A-Za-z0-9._-]+/g, '_');
  return `${String(image.index).padStart(5, '0')}_${stem}.png`;
}

/** Writes one overlay per image at the original image's resolution (or its crop). */
export async function writeOverlays(
  images: readonly ExplainedImage[],
  context: ExplainContext,
  dir: string,
  options: RenderOptions = {},
  silent = false,
): Promise<void> {
  await fs.promises.mkdir(dir, { recursive: true });
  const progress = new ProgressBar('writing overlays', images.length, { unit: 'img', silent });
  for (const image of images) {
    const original = await readImageRgb(image.path);
    const rendered = await renderOverlay(
      original,
      { data: image.layerMap, height: image.layerHeight, width: image.layerWidth },
      { width: context.inputSize, height: context.inputSize },
      { ...options, fit: context.resizeFit },
    );
    const extra = `; ${image.path}: true ${context.classNames[image.trueClass]}, predicted ${context.classNames[image.predictedClass]}, attention share ${formatShare(image.attentionShare)}`;
    await writeRgbPng(path.join(dir, overlayFileName(image)), rendered.overlay, pngDescription({ ...context, targetClass: image.targetClass }, extra));
    progress.tick();
  }
  progress.finish();
}

function csvField(value: string): string {
  return /[",\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

/** Counts of images per category. */
export function categoryCounts(images: readonly ExplainedImage[]): Record<AttentionCategory, number> {
  const counts = { correct_focused: 0, correct_misplaced: 0, misclassified: 0 };
  for (const image of images) {
    counts[image.category]++;
  }
  return counts;
}

/**
 * Writes explanations.json (context, counts and one record per image) and
 * explanations.csv (one row per image) to `dir`. An empty map's attention
 * share is written as null in JSON and left empty in CSV.
 */
export async function writeExplanationRecords(
  images: readonly ExplainedImage[],
  context: ExplainContext,
  dir: string,
  extra: Record<string, unknown> = {},
): Promise<{ json: string; csv: string }> {
  await fs.promises.mkdir(dir, { recursive: true });
  const names = context.classNames;
  const records = images.map((image) => ({
    path: image.path,
    true: names[image.trueClass],
    predicted: names[image.predictedClass],
    confidence: image.confidence,
    target: names[image.targetClass],
    targetProbability: image.targetProbability,
    attentionShare: Number.isNaN(image.attentionShare) ? null : image.attentionShare,
    regionAreaFraction: image.regionAreaFraction,
    category: image.category,
    method: image.method,
    layer: image.layerName,
    emptyMap: image.rawMax === 0,
  }));
  const json = path.join(dir, 'explanations.json');
  const { classNames: _names, targetClass, ...rest } = context;
  const header = {
    ...rest,
    targetClass: targetClass === undefined ? 'predicted' : names[targetClass],
    classNames: names,
    counts: categoryCounts(images),
    ...extra,
  };
  await writeFileAtomic(json, JSON.stringify({ ...header, images: records }, null, 1));

  const rows = ['path,true,predicted,confidence,target,target_probability,attention_share,region_area_fraction,category,method,layer'];
  for (const r of records) {
    rows.push(
      [
        csvField(r.path),
        r.true,
        r.predicted,
        r.confidence.toFixed(6),
        r.target,
        r.targetProbability.toFixed(6),
        r.attentionShare === null ? '' : r.attentionShare.toFixed(6),
        r.regionAreaFraction.toFixed(6),
        r.category,
        r.method,
        csvField(r.layer),
      ].join(','),
    );
  }
  const csv = path.join(dir, 'explanations.csv');
  await writeFileAtomic(csv, rows.join('\n') + '\n');
  return { json, csv };
}
