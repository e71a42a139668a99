/**
 * Prediction over many files and folders, streamed: files are walked lazily
 * and processed one at a time, with the next file decoded while the current
 * one runs through the models, so at most two decoded images are in memory.
 * A file that fails is reported with its path and reason, and the rest go on.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { CANONICAL_CLASSES } from '../classes';
import { ImageDecodeError } from '../data/decode';
import { writeRgbPng } from '../explain/overlay';
import { writeFileAtomic } from '../models/io';
import { log } from '../util/log';
import { ProgressBar } from '../util/progress';
import { faceCaption, writeAnnotatedImage, type Annotation } from './annotate';
import type { RgbImage } from './detect';
import { countInputs, walkInputs, type InputFile } from './inputs';
import { CsvWriter, OutputPlanner, annotationFormat, errorRecord, successRecord, type PredictionRecord } from './output';
import type { Prediction, Predictor } from './predictor';

export interface PredictFilesOptions {
  /** Folder for the annotated copies, per-image JSON records and Grad-CAM overlays; nothing is written there without it. */
  out?: string;
  /** CSV file with one row per face. */
  csv?: string;
  /** Writes annotated copies into `out`; default true. */
  annotate?: boolean;
  /** Maximum length of the annotated copies' longer side in pixels, 0 for the original size; default 1280. */
  annotateSize?: number;
  /** No progress bar. */
  silent?: boolean;
  /** Receives each record as soon as its image is done, in input order. */
  onRecord?: (record: PredictionRecord) => void;
}

export interface PredictSummary {
  /** Files that were read and processed. */
  images: number;
  faces: number;
  /** Processed images in which no face was found and none was classified. */
  withoutFaces: number;
  /** Images classified as a whole because no face passed the detector. */
  wholeImage: number;
  failed: number;
  /** Files in folders skipped because their extension is not an image format. */
  skippedFiles: number;
  seconds: number;
}

type Decoded = { image: RgbImage; decodeMs: number } | { error: unknown };

async function decodeTimed(predictor: Predictor, file: string): Promise<Decoded> {
  const start = performance.now();
  try {
    const image = await predictor.decode(file);
    return { image, decodeMs: performance.now() - start };
  } catch (error) {
    return { error };
  }
}

function errorMessage(file: string, error: unknown): string {
  if (error instanceof ImageDecodeError) {
    return error.message;
  }
  return `${file}: ${(error as Error).message ?? String(error)}`;
}

/**
 * Runs the predictor over the inputs in order and writes the requested
 * outputs. Returns counts; `failed` > 0 means some files had no result.
 */
export async function predictFiles(predictor: Predictor, inputs: readonly string[], options: PredictFilesOptions = {}): Promise<PredictSummary> {
  const start = performance.now();
  const outDir = options.out !== undefined ? path.resolve(options.out) : undefined;
  const exclude = outDir !== undefined ? [outDir] : [];
  const planner = outDir !== undefined ? new OutputPlanner(outDir) : undefined;
  const annotate = options.annotate ?? true;
  const csv = options.csv !== undefined ? new CsvWriter(options.csv) : undefined;
  if (outDir !== undefined) {
    await fs.promises.mkdir(outDir, { recursive: true });
  }

  const total = await countInputs(inputs, { exclude });
  const progress = new ProgressBar('predicting', total, { unit: 'img', silent: options.silent ?? false });
  const summary: PredictSummary = { images: 0, faces: 0, withoutFaces: 0, wholeImage: 0, failed: 0, skippedFiles: 0, seconds: 0 };

  const entries = walkInputs(inputs, {
    exclude,
    onSkipped: (file) => {
      summary.skippedFiles++;
      log.debug(`skipped ${file}: not an image file extension`);
    },
  });

  const emit = async (record: PredictionRecord): Promise<void> => {
    options.onRecord?.(record);
    await csv?.write(record);
    progress.tick();
  };

  try {
    let current = await entries.next();
    let pending: Promise<Decoded> | undefined = current.done !== true && current.value.kind === 'file' ? decodeTimed(predictor, current.value.path) : undefined;
    while (current.done !== true) {
      const entry = current.value;
      const decoded = pending;
      current = await entries.next();
      // Start decoding the next file now; sharp decodes on its own threads while this one runs through the models.
      pending = current.done !== true && current.value.kind === 'file' ? decodeTimed(predictor, current.value.path) : undefined;

      if (entry.kind === 'problem') {
        summary.failed++;
        const message = `${entry.path}: ${entry.reason}`;
        log.error(message);
        await emit(errorRecord(entry.path, message));
        continue;
      }
      const result = await (decoded as Promise<Decoded>);
      if ('error' in result) {
        summary.failed++;
        const message = errorMessage(entry.path, result.error);
        log.error(message);
        await emit(errorRecord(entry.path, message));
        continue;
      }
      try {
        const record = await processImage(predictor, entry, result.image, result.decodeMs, planner, { annotate, annotateSize: options.annotateSize ?? 1280 });
        summary.images++;
        summary.faces += record.faces.length;
        if (record.fallback === 'whole-image') {
          summary.wholeImage++;
        } else if (record.faces.length === 0) {
          summary.withoutFaces++;
        }
        await emit(record);
      } catch (error) {
        summary.failed++;
        const message = errorMessage(entry.path, error);
        log.error(message);
        await emit(errorRecord(entry.path, message));
      }
    }
  } finally {
    progress.finish();
    await csv?.close();
  }
  summary.seconds = (performance.now() - start) / 1000;
  return summary;
}

async function processImage(
  predictor: Predictor,
  entry: InputFile,
  image: RgbImage,
  decodeMs: number,
  planner: OutputPlanner | undefined,
  options: { annotate: boolean; annotateSize: number },
): Promise<PredictionRecord> {
  const prediction = await predictor.predict(image);
  const { result } = prediction;
  if (result.fallback === 'whole-image') {
    const score = result.faces[0]?.score;
    log.info(
      `${entry.path}: no face passed the detector, so the whole image was classified as one face` +
        (score !== null && score !== undefined ? ` (face-crop check score ${score.toFixed(2)})` : '') +
        '.',
    );
  } else if (result.faces.length === 0) {
    log.debug(`${entry.path}: no face found.`);
  }

  const timingsMs = {
    decode: round1(decodeMs),
    detect: round1(prediction.detectMs),
    classify: round1(prediction.classifyMs),
    total: round1(decodeMs + prediction.detectMs + prediction.classifyMs),
  };
  if (planner === undefined) {
    return successRecord(entry.path, result, { timingsMs });
  }

  const names = planner.plan(entry.relative);
  const annotatedPath = path.join(planner.dir, names.annotated);
  if (path.resolve(annotatedPath) === path.resolve(entry.path)) {
    throw new Error(`writing the annotated copy would overwrite the input file; choose an output folder (--out) outside the input folders.`);
  }
  await fs.promises.mkdir(path.dirname(annotatedPath), { recursive: true });
  let annotated: string | undefined;
  if (options.annotate) {
    await writeAnnotatedImage(annotatedPath, image, annotations(prediction), { maxSide: options.annotateSize, format: annotationFormat(entry.path).format });
    annotated = names.annotated;
  }
  const explanations = prediction.explanations !== undefined ? await writeExplanations(prediction, planner.dir, names.explanation) : undefined;
  const record = successRecord(entry.path, result, {
    timingsMs,
    ...(annotated !== undefined ? { annotated } : {}),
    ...(explanations !== undefined ? { explanations } : {}),
  });
  await writeFileAtomic(path.join(planner.dir, names.record), JSON.stringify(record, null, 1) + '\n');
  return record;
}

function annotations(prediction: Prediction): Annotation[] {
  const wholeImage = prediction.result.fallback === 'whole-image';
  return prediction.result.faces.map((face) => {
    const classIndex = CANONICAL_CLASSES.indexOf(face.label);
    return { box: face.box, classIndex, caption: faceCaption(classIndex, face.confidence, wholeImage ? ' (whole image)' : '') };
  });
}

async function writeExplanations(prediction: Prediction, dir: string, name: (face: number) => string): Promise<string[]> {
  const written: string[] = [];
  for (const [i, explanation] of (prediction.explanations ?? []).entries()) {
    const relative = name(i + 1);
    const face = prediction.result.faces[i];
    await writeRgbPng(
      path.join(dir, relative),
      explanation.overlay,
      `${explanation.method} on layer ${explanation.layerName}; predicted ${face?.label ?? '?'} ${face?.confidence.toFixed(2) ?? ''}`.trim(),
    );
    written.push(relative);
  }
  return written;
}

function round1(value: number): number {
  return Math.round(value * 10) / 10;
}
