/**
 * Evaluation of a model on a split: predictions over every image (never
 * augmented), the classification report, and its files and figures.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import * as tf from '@tensorflow/tfjs';

import type { ImageStore } from '../data/store';
import { pixelsToTensor, preprocess } from '../data/preprocess';
import { saveFiguresPng, findChromium } from '../figures/export';
import { confusionMatrixFigure, rocFigure } from '../figures/plots';
import type { PreprocessingMode } from '../models/types';
import { writeFileAtomic } from '../models/io';
import { log } from '../util/log';
import { ProgressBar } from '../util/progress';
import { classificationReport, reportToCsv, reportToText } from './metrics';
import type { ClassificationReport } from './types';

export interface Predictions {
  /** Row-major [n, numClasses] probabilities. */
  probabilities: Float32Array;
  labels: Int32Array;
  paths: string[];
}

export interface PredictOptions {
  batchSize?: number;
  preprocessing: PreprocessingMode;
  label?: string;
  silent?: boolean;
  /**
   * Computes the model's output for a preprocessed batch instead of
   * model.predict, e.g. an ONNX Runtime session of the same model. The model
   * still gives the output width.
   */
  runner?: (x: tf.Tensor4D) => Promise<Float32Array>;
}

/** Runs the model over every image of the store in order, in inference mode. */
export async function predictStore(model: tf.LayersModel, store: ImageStore, options: PredictOptions): Promise<Predictions> {
  const batchSize = options.batchSize ?? 64;
  const n = store.length;
  const numClasses = (model.outputs[0]?.shape[1] as number | undefined) ?? 0;
  const probabilities = new Float32Array(n * numClasses);
  const progress = new ProgressBar(`predicting ${options.label ?? ''}`.trim(), n, { unit: 'img', silent: options.silent ?? false });
  let nextBatch = n > 0 ? store.batch(range(0, Math.min(batchSize, n))) : undefined;
  for (let start = 0; start < n; start += batchSize) {
    const batch = await (nextBatch as ReturnType<ImageStore['batch']>);
    const nextStart = start + batchSize;
    // Decoding of the next batch (when not cached) overlaps with this one's inference.
    nextBatch = nextStart < n ? store.batch(range(nextStart, Math.min(nextStart + batchSize, n))) : undefined;
    const output = tf.tidy(() => {
      const x = preprocess(pixelsToTensor(batch.pixels, batch.count, batch.size), options.preprocessing);
      return options.runner === undefined ? (model.predict(x) as tf.Tensor) : x;
    });
    probabilities.set(options.runner === undefined ? await output.data() : await options.runner(output as tf.Tensor4D), start * numClasses);
    output.dispose();
    progress.tick(batch.count);
  }
  progress.finish();
  return { probabilities, labels: store.labels(), paths: store.records.map((r) => r.path) };
}

function range(start: number, end: number): number[] {
  return Array.from({ length: end - start }, (_, i) => start + i);
}

/** Replaces non-finite numbers, which JSON cannot hold, by strings ("Infinity", "NaN"). */
function jsonSafe(value: unknown): unknown {
  return JSON.parse(
    JSON.stringify(value, (_key, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v)),
  );
}

/** Keeps the predictions of the images whose path is not in `exclude`, in order. */
export function excludePredictions(predictions: Predictions, exclude: ReadonlySet<string>): Predictions {
  const keep: number[] = [];
  predictions.paths.forEach((file, i) => {
    if (!exclude.has(file)) {
      keep.push(i);
    }
  });
  const k = predictions.labels.length === 0 ? 0 : predictions.probabilities.length / predictions.labels.length;
  const probabilities = new Float32Array(keep.length * k);
  keep.forEach((row, i) => probabilities.set(predictions.probabilities.subarray(row * k, (row + 1) * k), i * k));
  return {
    probabilities,
    labels: Int32Array.from(keep, (row) => predictions.labels[row] as number),
    paths: keep.map((row) => predictions.paths[row] as string),
  };
}

export interface WriteEvaluationOptions {
  /** Folder for metrics.json, report.txt, per_class.csv and predictions.csv. */
  dir: string;
  /** Folder for PNG figures; defaults to `dir`. */
  figuresDir?: string;
  title: string;
  /** Writes PNG figures (needs Chromium); without it only the data files are written. */
  figures?: boolean;
  extra?: Record<string, unknown>;
  /**
   * Files of the evaluated split that also occur, byte for byte, in a split the
   * model trained or was selected on. When given, metrics.json also holds the
   * report without them under "withoutDuplicates", and report.txt adds its summary.
   */
  leakedFiles?: ReadonlySet<string>;
}

/** Computes the report from predictions and writes its files and figures. */
export async function writeEvaluation(
  predictions: Predictions,
  classNames: readonly string[],
  options: WriteEvaluationOptions,
): Promise<ClassificationReport> {
  const report = classificationReport(predictions.labels, predictions.probabilities, classNames);
  const dir = options.dir;
  await fs.promises.mkdir(dir, { recursive: true });
  let text = reportToText(report, { digits: 4 });
  let withoutDuplicates: Record<string, unknown> | undefined;
  const leaked = options.leakedFiles === undefined ? 0 : predictions.paths.filter((p) => options.leakedFiles?.has(p)).length;
  if (options.leakedFiles !== undefined && leaked > 0 && leaked < predictions.paths.length) {
    const clean = excludePredictions(predictions, options.leakedFiles);
    const cleanReport = classificationReport(clean.labels, clean.probabilities, classNames);
    withoutDuplicates = { excludedImages: leaked, ...cleanReport };
    text +=
      `\n\n${leaked} of these ${predictions.paths.length} images also occur in the training or validation split. ` +
      `Without them (${clean.paths.length} images): accuracy ${cleanReport.accuracy.toFixed(4)}, ` +
      `macro-F1 ${cleanReport.macro.f1.toFixed(4)}, macro AUC ${cleanReport.macroAuc.toFixed(4)}.`;
  }
  await writeFileAtomic(path.join(dir, 'report.txt'), `${options.title}\n\n${text}\n`);
  await writeFileAtomic(path.join(dir, 'per_class.csv'), reportToCsv(report));
  await writeFileAtomic(
    path.join(dir, 'metrics.json'),
    JSON.stringify(jsonSafe({ title: options.title, ...options.extra, ...report, ...(withoutDuplicates !== undefined ? { withoutDuplicates } : {}) }), null, 1),
  );

  const k = classNames.length;
  const rows = ['path,true,predicted,' + classNames.join(',')];
  predictions.paths.forEach((file, i) => {
    const probs = Array.from(predictions.probabilities.subarray(i * k, (i + 1) * k));
    const predicted = probs.indexOf(Math.max(...probs));
    rows.push(
      [JSON.stringify(file), classNames[predictions.labels[i] as number], classNames[predicted], ...probs.map((p) => p.toFixed(6))].join(','),
    );
  });
  await writeFileAtomic(path.join(dir, 'predictions.csv'), rows.join('\n') + '\n');

  if (options.figures ?? true) {
    await writeEvaluationFigures(report, options.figuresDir ?? dir, options.title);
  }
  return report;
}

export async function writeEvaluationFigures(report: ClassificationReport, dir: string, title: string): Promise<void> {
  if (findChromium() === undefined) {
    log.warn(`figures: Chromium not found, so no PNG figures in ${dir}. Install it (apt-get install chromium) or set FER_CHROMIUM.`);
    return;
  }
  await saveFiguresPng([
    {
      figure: confusionMatrixFigure(report.confusionMatrix, report.classNames, { title: `${title}: confusion matrix (counts)` }),
      path: path.join(dir, 'confusion_matrix.png'),
      width: 800,
      height: 700,
    },
    {
      figure: confusionMatrixFigure(report.confusionMatrix, report.classNames, {
        normalize: true,
        title: `${title}: confusion matrix (row-normalised)`,
      }),
      path: path.join(dir, 'confusion_matrix_normalized.png'),
      width: 800,
      height: 700,
    },
    { figure: rocFigure(report.roc, report.macroAuc, { title: `${title}: ROC (one-vs-rest)` }), path: path.join(dir, 'roc.png'), width: 750, height: 650 },
  ]);
}
