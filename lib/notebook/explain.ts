/**
 * Grad-CAM galleries of a finished run in one call, for the notebooks: the
 * same steps as `fer explain` with its defaults (predicted class, central
 * ellipse face region, galleries of the three attention categories, and
 * explanations.json/.csv).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { ClassAliases } from '../classes';
import { discoverDataset, type SplitName } from '../data/dataset';
import { ImageStore } from '../data/store';
import { CentralFaceRegion, DEFAULT_FOCUS_THRESHOLD, type AttentionCategory } from '../explain/attention';
import { createCam, type CamMethod } from '../explain/cam';
import { categoryCounts, explainStore, METHOD_TITLES, writeExplanationRecords, writeGalleries, type ExplainContext } from '../explain/run';
import { stratifiedSubset } from '../train/data';
import { loadRun } from '../train/load_run';

/** Score of the target class per method, as `fer explain` writes it into explanations.json. */
const SCORES: Record<CamMethod, string> = {
  gradcam: 'logit',
  'gradcam++': 'logit',
  eigencam: 'none (class-agnostic)',
  scorecam: 'probability of masked inputs',
};

export interface RunGalleryOptions {
  /** Folder for the three gallery PNGs and explanations.json/.csv. */
  outDir: string;
  /** Default 'gradcam'. */
  method?: CamMethod;
  /** Default 'test'. */
  split?: SplitName;
  /** Explains at most this many images, drawn per class in proportion with the run's seed; default all. */
  limit?: number;
  /** Tiles per gallery; default 12. */
  tiles?: number;
  /** Tiles per row; default 4. */
  columns?: number;
  /** Side of each tile image in pixels; default 112. */
  tileSize?: number;
  silent?: boolean;
}

export interface RunGalleries {
  method: CamMethod;
  methodTitle: string;
  layerName: string;
  /** Feature map size of the explained layer: [height, width, channels]. */
  layerShape: [number, number, number];
  images: number;
  counts: Record<AttentionCategory, number>;
  /** Mean share of heatmap mass inside the face region; NaN when every map is empty. */
  meanAttentionShare: number;
  galleries: Record<AttentionCategory, string>;
  records: { json: string; csv: string };
}

/** Explains a run's predictions on one split and writes the galleries; the backend must be initialised first (initBackend). */
export async function explainRunGalleries(runDir: string, options: RunGalleryOptions): Promise<RunGalleries> {
  const method = options.method ?? 'gradcam';
  const split = options.split ?? 'test';
  const run = await loadRun(runDir);
  const fer = run.fer;
  const cam = createCam(method, fer);
  const region = new CentralFaceRegion();

  const dataDir = run.options.dataDir;
  const dataset = discoverDataset(dataDir, { aliases: new ClassAliases(run.options.classAliases) });
  const records = dataset.splits[split];
  if (records === undefined) {
    throw new Error(`Dataset ${dataDir} has no ${split} split (found: ${Object.keys(dataset.splits).join(', ')}). Choose another split.`);
  }
  // Stream 3 draws the same images as `fer explain --limit`.
  const selected = stratifiedSubset(records, options.limit, run.options.seed, 3);
  const store = await ImageStore.load(selected, { size: fer.inputSize, fit: run.options.resizeFit, label: split, silent: options.silent ?? false });
  const images = await explainStore(cam, store, {
    preprocessing: fer.backbone.preprocessing,
    region,
    focusThreshold: DEFAULT_FOCUS_THRESHOLD,
    label: split,
    silent: options.silent ?? false,
  });

  const context: ExplainContext = {
    runDir: run.runDir,
    configuration: fer.configuration.name,
    backbone: fer.backbone.name,
    method,
    layerName: cam.layerName,
    layerShape: cam.split.featureShape,
    score: SCORES[method],
    split,
    dataDir,
    classNames: fer.classNames,
    region: region.description,
    focusThreshold: DEFAULT_FOCUS_THRESHOLD,
    inputSize: fer.inputSize,
    resizeFit: run.options.resizeFit,
  };
  const outDir = path.resolve(options.outDir);
  const galleries = await writeGalleries(images, context, outDir, {
    tiles: options.tiles ?? 12,
    columns: options.columns ?? 4,
    tileSize: options.tileSize ?? 112,
  });
  const files = await writeExplanationRecords(images, context, outDir, {
    regionAreaFraction: region.maskFor({ index: 0 }, fer.inputSize, fer.inputSize).areaFraction,
    skipped: store.skipped,
    galleries,
  });
  fer.model.dispose();

  const shares = images.map((image) => image.attentionShare).filter((share) => !Number.isNaN(share));
  return {
    method,
    methodTitle: METHOD_TITLES[method],
    layerName: cam.layerName,
    layerShape: cam.split.featureShape,
    images: images.length,
    counts: categoryCounts(images),
    meanAttentionShare: shares.length > 0 ? shares.reduce((a, b) => a + b, 0) / shares.length : Number.NaN,
    galleries,
    records: files,
  };
}

/** Summary of the explanations.json that an earlier explainRunGalleries (or `fer explain`) call wrote. */
export interface GallerySummary {
  configuration: string;
  method: string;
  layerName: string;
  images: number;
  counts: Record<AttentionCategory, number>;
  meanAttentionShare: number;
  galleries: Record<AttentionCategory, string>;
}

/** Reads explanations.json in `dir`, or returns undefined when the folder contains none. */
export function loadGallerySummary(dir: string): GallerySummary | undefined {
  const file = path.join(dir, 'explanations.json');
  if (!fs.existsSync(file)) {
    return undefined;
  }
  const saved = JSON.parse(fs.readFileSync(file, 'utf8')) as {
    configuration: string;
    method: string;
    layerName: string;
    counts: Record<AttentionCategory, number>;
    galleries: Record<AttentionCategory, string>;
    images: Array<{ attentionShare: number | null }>;
  };
  const shares = saved.images.map((image) => image.attentionShare).filter((share): share is number => share !== null);
  return {
    configuration: saved.configuration,
    method: saved.method,
    layerName: saved.layerName,
    images: saved.images.length,
    counts: saved.counts,
    meanAttentionShare: shares.length > 0 ? shares.reduce((a, b) => a + b, 0) / shares.length : Number.NaN,
    galleries: saved.galleries,
  };
}
