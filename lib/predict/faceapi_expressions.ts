/**
 * face-api's expression model (FaceExpressionNet from @vladmandic/face-api
 * 1.7.15) as a baseline for `fer evaluate --faceapi`: it scores the same
 * images as a trained run and its output is mapped to canonical class order,
 * so both go through the same metrics code.
 */
import * as tf from '@tensorflow/tfjs';

import { CANONICAL_CLASSES, toCanonicalClass } from '../classes';
import type { ImageStore } from '../data/store';
import type { Predictions } from '../eval/evaluate';
import { ProgressBar } from '../util/progress';
import { FACEAPI_EXPRESSION_INPUT_SIZE, FACEAPI_EXPRESSION_LABELS, loadFaceApiNet } from './faceapi';

export const FACEAPI_EXPRESSION_MODEL = 'face-api FaceExpressionNet (@vladmandic/face-api 1.7.15)';

/** For each FaceExpressionNet output, its index in CANONICAL_CLASSES (neutral -> neutral, happy -> happiness, ...). */
export const FACEAPI_TO_CANONICAL: readonly number[] = FACEAPI_EXPRESSION_LABELS.map((label) => CANONICAL_CLASSES.indexOf(toCanonicalClass(label)));

export interface FaceApiPredictOptions {
  batchSize?: number;
  label?: string;
  silent?: boolean;
  /** Folder with face-api's weight files; default the package's model/ folder. */
  modelDir?: string;
}

/**
 * Runs FaceExpressionNet over every image of the store, each treated as an
 * already-cropped face. The store should hold images at 112x112
 * (FACEAPI_EXPRESSION_INPUT_SIZE); other sizes are padded to a square and
 * resized bilinearly by face-api. Returns probabilities in canonical order.
 */
export async function predictStoreFaceApi(store: ImageStore, options: FaceApiPredictOptions = {}): Promise<Predictions> {
  const net = await loadFaceApiNet('faceExpressionNet', options.modelDir);
  const batchSize = options.batchSize ?? 64;
  const n = store.length;
  const k = CANONICAL_CLASSES.length;
  const probabilities = new Float32Array(n * k);
  const progress = new ProgressBar(`face-api expressions ${options.label ?? ''}`.trim(), n, { unit: 'img', silent: options.silent ?? false });
  for (let start = 0; start < n; start += batchSize) {
    const indices = Array.from({ length: Math.min(batchSize, n - start) }, (_, i) => start + i);
    const batch = await store.batch(indices);
    const images = tf.tidy(() => tf.unstack(tf.tensor4d(batch.pixels, [batch.count, batch.size, batch.size, 3], 'int32')) as tf.Tensor3D[]);
    let output: tf.Tensor2D | undefined;
    try {
      output = await net.forward(images);
      const values = await output.data<'float32'>();
      for (let i = 0; i < batch.count; i++) {
        FACEAPI_TO_CANONICAL.forEach((canonical, j) => {
          probabilities[(start + i) * k + canonical] = values[i * FACEAPI_EXPRESSION_LABELS.length + j] as number;
        });
      }
    } finally {
      output?.dispose();
      tf.dispose(images);
    }
    progress.tick(batch.count);
  }
  progress.finish();
  return { probabilities, labels: store.labels(), paths: store.records.map((r) => r.path) };
}

export { FACEAPI_EXPRESSION_INPUT_SIZE };

export interface ComparisonRow {
  model: string;
  images: number;
  accuracy: number;
  macroF1: number;
}

/** Formats models scored on the same images as a Markdown table, one row each. */
export function comparisonTable(rows: readonly ComparisonRow[]): string {
  const lines = ['| Model | Images | Accuracy | Macro-F1 |', '| --- | ---: | ---: | ---: |'];
  for (const row of rows) {
    lines.push(`| ${row.model} | ${row.images} | ${row.accuracy.toFixed(4)} | ${row.macroF1.toFixed(4)} |`);
  }
  return lines.join('\n');
}
