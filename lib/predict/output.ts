/**
 * Output of `fer predict`: one JSON record per image, CSV rows per face, and
 * the names of the annotated copies and Grad-CAM overlays under the output
 * folder.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { CANONICAL_CLASSES } from '../classes';
import type { AnnotationFormat } from './annotate';
import type { FaceResult, ImageResult } from './predictor';

/** Version of the record layout below; raised when a field changes meaning or is removed. */
export const RECORD_SCHEMA_VERSION = 1;

/** Per-face record fields: FaceResult plus the file name of its Grad-CAM overlay. */
export interface FaceRecord extends FaceResult {
  /** Grad-CAM overlay of the face, relative to the output folder; present with --explain. */
  explanation?: string;
}

/** The JSON record of one image, written to stdout (one line each) and to <out>/<name>.json. */
export interface PredictionRecord {
  schema: number;
  /** The input path as given on the command line, or joined from a folder argument. */
  file: string;
  /** Present when the image was processed. */
  width?: number;
  height?: number;
  detector?: ImageResult['detector'];
  fallback?: ImageResult['fallback'];
  /** Class names in the order of each face's probabilities. */
  classes?: readonly string[];
  faces: FaceRecord[];
  /** Annotated copy, relative to the output folder. */
  annotated?: string;
  timingsMs?: { decode: number; detect: number; classify: number; total: number };
  /** Reason the image could not be processed; `faces` is empty then. */
  error?: string;
}

export function successRecord(
  file: string,
  result: ImageResult,
  extra: { annotated?: string; explanations?: string[]; timingsMs: PredictionRecord['timingsMs'] },
): PredictionRecord {
  const faces: FaceRecord[] = result.faces.map((face, i) => {
    const explanation = extra.explanations?.[i];
    return explanation !== undefined ? { ...face, explanation } : { ...face };
  });
  return {
    schema: RECORD_SCHEMA_VERSION,
    file,
    width: result.width,
    height: result.height,
    detector: result.detector,
    fallback: result.fallback,
    classes: CANONICAL_CLASSES,
    faces,
    ...(extra.annotated !== undefined ? { annotated: extra.annotated } : {}),
    ...(extra.timingsMs !== undefined ? { timingsMs: extra.timingsMs } : {}),
  };
}

export function errorRecord(file: string, message: string): PredictionRecord {
  return { schema: RECORD_SCHEMA_VERSION, file, faces: [], error: message };
}

/** Quotes a CSV field when it contains a comma, quote or line break (RFC 4180). */
function csvField(value: string | number | null | undefined): string {
  if (value === null || value === undefined) {
    return '';
  }
  const text = String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export const CSV_COLUMNS = ['file', 'face', 'x', 'y', 'width', 'height', 'score', 'fallback', 'label', 'confidence', ...CANONICAL_CLASSES, 'error'];

/**
 * CSV rows of one record: one per face, or a single row with empty face
 * columns for an image without faces or with an error, so that every input
 * file appears.
 */
export function csvRows(record: PredictionRecord): string[] {
  if (record.faces.length === 0) {
    const empty = CSV_COLUMNS.slice(1, -1).map(() => '');
    if (record.error === undefined) {
      // An image without faces: face count 0 distinguishes it from an error row.
      empty[0] = '0';
    }
    return [[csvField(record.file), ...empty, csvField(record.error)].join(',')];
  }
  return record.faces.map((face, i) =>
    [
      csvField(record.file),
      String(i + 1),
      String(face.box.x),
      String(face.box.y),
      String(face.box.width),
      String(face.box.height),
      csvField(face.score),
      csvField(record.fallback),
      face.label,
      String(face.confidence),
      ...CANONICAL_CLASSES.map((name) => String(face.probabilities[name])),
      '',
    ].join(','),
  );
}

/** Appends CSV rows to a file as records arrive, so memory does not grow with the number of images. */
export class CsvWriter {
  private readonly stream: fs.WriteStream;
  private failure: Error | undefined;

  constructor(readonly file: string) {
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    this.stream = fs.createWriteStream(file, { encoding: 'utf8' });
    this.stream.on('error', (error) => {
      this.failure = error;
    });
    this.stream.write(CSV_COLUMNS.join(',') + '\n');
  }

  async write(record: PredictionRecord): Promise<void> {
    if (this.failure !== undefined) {
      throw new Error(`Cannot write ${this.file}: ${this.failure.message}`);
    }
    const text = csvRows(record).join('\n') + '\n';
    if (!this.stream.write(text)) {
      await new Promise<void>((resolve) => this.stream.once('drain', resolve));
    }
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.stream.end((error?: Error | null) => (error ? reject(error) : resolve()));
    });
    if (this.failure !== undefined) {
      throw new Error(`Cannot write ${this.file}: ${this.failure.message}`);
    }
  }
}

/** Output format of the annotated copy of a file: the input's own format when it is JPEG, PNG or WebP, otherwise PNG. */
export function annotationFormat(file: string): { format: AnnotationFormat; extension: string } {
  const extension = path.extname(file).toLowerCase();
  if (extension === '.jpg' || extension === '.jpeg') return { format: 'jpeg', extension: path.extname(file) };
  if (extension === '.png') return { format: 'png', extension: path.extname(file) };
  if (extension === '.webp') return { format: 'webp', extension: path.extname(file) };
  return { format: 'png', extension: '.png' };
}

/** Paths of one image's outputs, relative to the output folder. */
export interface OutputNames {
  /** The record: the input's relative path plus ".json". */
  record: string;
  /** The annotated copy: the input's relative path, with ".png" added for formats other than JPEG, PNG and WebP. */
  annotated: string;
  /** Grad-CAM overlay of face i (1-based): the input's relative path plus ".face<i>.gradcam.png". */
  explanation(face: number): string;
}

/**
 * Assigns output names that mirror the inputs' relative paths under the
 * output folder. An input whose names would collide with earlier outputs
 * (two file arguments with the same name, or x.bmp next to x.bmp.png) gets
 * "_2", "_3" ... before its extension. Names compare case-insensitively, for
 * case-insensitive file systems. The planner keeps every name it assigned,
 * a few dozen bytes per input.
 */
export class OutputPlanner {
  private readonly used = new Set<string>();

  constructor(readonly dir: string) {}

  plan(relative: string): OutputNames {
    const normalised = relative.split(path.sep).filter((part) => part !== '' && part !== '.' && part !== '..').join(path.sep) || 'image';
    const inputExtension = path.extname(normalised);
    const stemOf = normalised.slice(0, normalised.length - inputExtension.length);
    const { extension } = annotationFormat(normalised);
    for (let n = 1; ; n++) {
      const base = n === 1 ? normalised : `${stemOf}_${n}${inputExtension}`;
      const annotated = extension === inputExtension ? base : `${base}${extension}`;
      const record = `${base}.json`;
      if (this.used.has(annotated.toLowerCase()) || this.used.has(record.toLowerCase())) {
        continue;
      }
      this.used.add(annotated.toLowerCase());
      this.used.add(record.toLowerCase());
      return { record, annotated, explanation: (face: number) => `${base}.face${face}.gradcam.png` };
    }
  }
}
