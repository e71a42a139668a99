/**
 * Prediction over an image store through an ONNX Runtime copy of the
 * model, which runs several times faster than tfjs-node, with
 * TensorFlow.js as the fallback. Training (validation, feature cache, test
 * split) and `fer evaluate` use it. FER_ONNX=off keeps them on TensorFlow.js.
 */
import type * as tf from '@tensorflow/tfjs';

import type { ImageStore } from '../data/store';
import { exportOnnx } from '../onnx/export';
import { OnnxModel, onnxRuntime } from '../onnx/runtime';
import { log } from '../util/log';
import { predictStore, type PredictOptions, type Predictions } from './evaluate';

/** True when FER_ONNX is off, 0, false or no; false when it is unset, on, 1, true or yes. Throws for any other value. */
export function onnxDisabled(): boolean {
  const value = (process.env.FER_ONNX ?? '').trim().toLowerCase();
  if (['off', '0', 'false', 'no'].includes(value)) {
    return true;
  }
  if (['', 'on', '1', 'true', 'yes'].includes(value)) {
    return false;
  }
  throw new Error(
    `Invalid FER_ONNX value "${process.env.FER_ONNX}": set it to off to keep training and evaluation on TensorFlow.js, ` +
      'or to on (or leave it unset) to use ONNX Runtime where possible.',
  );
}

const warned = new Set<string>();

/**
 * Exports `model` as it is now and wraps an ONNX Runtime session of it as a
 * predictStore runner. Returns undefined when ONNX Runtime is off, missing
 * or cannot take the model, and logs the reason once per `label`.
 */
async function onnxRunner(model: tf.LayersModel, label: string): Promise<{ run: (x: tf.Tensor4D) => Promise<Float32Array>; dispose: () => Promise<void> } | undefined> {
  if (onnxDisabled() || onnxRuntime() === undefined) {
    return undefined;
  }
  try {
    const session = await OnnxModel.create(exportOnnx(model));
    return {
      run: async (x) => session.run((await x.data()) as Float32Array, x.shape),
      dispose: () => session.dispose(),
    };
  } catch (error) {
    if (!warned.has(label)) {
      warned.add(label);
      log.warn(`${label}: runs on TensorFlow.js, because the ONNX export or session failed: ${(error as Error).message}`);
    }
    return undefined;
  }
}

/** predictStore through ONNX Runtime where possible, else through tfjs. The model is exported as it is at the call. */
export async function predictStoreFast(model: tf.LayersModel, store: ImageStore, options: PredictOptions): Promise<Predictions> {
  const runner = store.length > 0 ? await onnxRunner(model, options.label ?? 'prediction') : undefined;
  try {
    return await predictStore(model, store, { ...options, ...(runner !== undefined ? { runner: runner.run } : {}) });
  } finally {
    await runner?.dispose();
  }
}
