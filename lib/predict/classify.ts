/**
 * Emotion classification of face crops with a trained run: each crop goes
 * through the run's input pipeline (resize fit and preprocessing mode from
 * preprocessing.json and config.json), and every face of an image runs in one
 * batch. Probabilities are returned in canonical class order.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';

import { CANONICAL_CLASSES, toCanonicalClass } from '../classes';
import type { ResizeFit } from '../data/decode';
import { pixelsToTensor, preprocess } from '../data/preprocess';
import type { PreprocessingMode } from '../models/types';
import { UnsupportedLayerError, exportOnnx } from '../onnx/export';
import { ensureOnnxFile, OnnxModel, onnxRuntime, onnxRuntimeError, onnxRuntimeVersion } from '../onnx/runtime';
import type { LoadedRun } from '../train/load_run';
import { log } from '../util/log';
import type { RgbImage } from './detect';
import type { Region } from './geometry';

export const COLOUR_MODES = ['grey', 'rgb'] as const;
/**
 * Colour of a crop as the model receives it. 'grey' converts it to luminance
 * replicated to three channels, which is what a model trained on FER-2013
 * (greyscale images) has seen. 'rgb' keeps colour, for models trained on
 * colour photos.
 */
export type ColourMode = (typeof COLOUR_MODES)[number];

/** A run whose classes cannot be mapped one-to-one onto the canonical classes. */
export class ClassListMismatchError extends Error {
  constructor(runDir: string, classNames: readonly string[], reason: string) {
    super(
      `The model of ${runDir} cannot be used for prediction: its classes ${JSON.stringify(classNames)} ${reason}. ` +
        `Prediction reports the canonical classes ${CANONICAL_CLASSES.join(', ')}; use a run trained on them.`,
    );
    this.name = 'ClassListMismatchError';
  }
}

/**
 * For each model output, its index in CANONICAL_CLASSES. Class names may be
 * aliases (happy for happiness) and in any order, but every canonical class
 * must appear exactly once.
 */
export function canonicalOrder(runDir: string, classNames: readonly string[]): number[] {
  if (classNames.length !== CANONICAL_CLASSES.length) {
    throw new ClassListMismatchError(runDir, classNames, `are ${classNames.length}, not ${CANONICAL_CLASSES.length}`);
  }
  const order = classNames.map((name) => {
    try {
      return CANONICAL_CLASSES.indexOf(toCanonicalClass(name));
    } catch {
      throw new ClassListMismatchError(runDir, classNames, `include "${name}", which is not one of them`);
    }
  });
  const missing = CANONICAL_CLASSES.filter((_, i) => !order.includes(i));
  if (missing.length > 0) {
    throw new ClassListMismatchError(runDir, classNames, `lack ${missing.join(', ')}`);
  }
  return order;
}

/**
 * Checks a run folder's classes.json before its model is built, so that a
 * run trained on other classes fails with ClassListMismatchError instead of
 * a weight-shape error. A run without classes.json uses the canonical classes.
 */
export async function checkRunClasses(runDir: string): Promise<void> {
  const file = path.join(path.resolve(runDir), 'classes.json');
  let text: string;
  try {
    text = await fs.promises.readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      return;
    }
    throw new Error(`Cannot read ${file}: ${(error as Error).message}`, { cause: error });
  }
  let classNames: unknown;
  try {
    classNames = JSON.parse(text);
  } catch (error) {
    throw new Error(`Invalid ${file}: ${(error as Error).message}. Expected a JSON array of class names.`, { cause: error });
  }
  if (!Array.isArray(classNames) || classNames.some((name) => typeof name !== 'string')) {
    throw new Error(`Invalid ${file}: expected a JSON array of class names.`);
  }
  canonicalOrder(path.resolve(runDir), classNames as string[]);
}

export const CLASSIFIER_ENGINES = ['auto', 'onnx', 'tfjs'] as const;
/**
 * Runtime of the emotion model. 'auto' uses ONNX Runtime when
 * onnxruntime-node loads and the model exports to ONNX, else TensorFlow.js;
 * 'onnx' requires ONNX Runtime; 'tfjs' always uses TensorFlow.js.
 */
export type ClassifierEngine = (typeof CLASSIFIER_ENGINES)[number];

export interface FaceClassifierOptions {
  /** Default 'grey'. */
  colour?: ColourMode;
}

/** Name of the ONNX copy of a run's model, written next to model.json on first use. */
export const RUN_ONNX_FILE = 'model.onnx';

/**
 * Keras Applications' preprocessing of uint8 RGB pixels into float32, the
 * same arithmetic as lib/data/preprocess.ts without TensorFlow.js, for the
 * ONNX Runtime path.
 */
export function preprocessPixels(pixels: Uint8Array, mode: PreprocessingMode): Float32Array {
  const out = new Float32Array(pixels.length);
  switch (mode) {
    case 'tf':
      for (let i = 0; i < pixels.length; i++) {
        out[i] = (pixels[i] as number) / 127.5 - 1;
      }
      return out;
    case 'caffe': {
      const bgrMean = [103.939, 116.779, 123.68];
      for (let i = 0; i < pixels.length; i += 3) {
        for (let c = 0; c < 3; c++) {
          out[i + c] = (pixels[i + 2 - c] as number) - (bgrMean[c] as number);
        }
      }
      return out;
    }
    case 'torch': {
      const mean = [0.485, 0.456, 0.406];
      const std = [0.229, 0.224, 0.225];
      for (let i = 0; i < pixels.length; i++) {
        const c = i % 3;
        out[i] = ((pixels[i] as number) / 255 - (mean[c] as number)) / (std[c] as number);
      }
      return out;
    }
    case 'none':
      out.set(pixels);
      return out;
  }
}

export class FaceClassifier {
  readonly inputSize: number;
  readonly fit: ResizeFit;
  readonly colour: ColourMode;
  private readonly order: number[];
  private onnx: OnnxModel | undefined;

  constructor(
    readonly run: LoadedRun,
    options: FaceClassifierOptions = {},
  ) {
    this.order = canonicalOrder(run.runDir, run.fer.classNames);
    this.inputSize = run.fer.inputSize;
    this.fit = run.options.resizeFit ?? 'fill';
    this.colour = options.colour ?? 'grey';
    if (!COLOUR_MODES.includes(this.colour)) {
      throw new RangeError(`Invalid colour mode "${String(this.colour)}": expected one of ${COLOUR_MODES.join(', ')}.`);
    }
  }

  /** The runtime that classify() and predictPixels() use. */
  get engine(): 'onnx' | 'tfjs' {
    return this.onnx !== undefined ? 'onnx' : 'tfjs';
  }

  /**
   * Switches classification to ONNX Runtime when `engine` allows it: the
   * run's model is exported to <run>/model/model.onnx on first use (again
   * when weights.bin is newer), or kept in memory when the folder is not
   * writable. Logs which runtime classifies and why. Returns the engine in use.
   */
  async selectEngine(engine: ClassifierEngine): Promise<'onnx' | 'tfjs'> {
    if (!CLASSIFIER_ENGINES.includes(engine)) {
      throw new RangeError(`Invalid classifier engine "${String(engine)}": expected one of ${CLASSIFIER_ENGINES.join(', ')}.`);
    }
    if (engine === 'tfjs') {
      log.info('classification: TensorFlow.js (engine tfjs requested).');
      return 'tfjs';
    }
    if (onnxRuntime() === undefined) {
      const reason = `onnxruntime-node is not available: ${onnxRuntimeError() ?? 'unknown reason'}`;
      if (engine === 'onnx') {
        throw new Error(`Cannot classify with ONNX Runtime: ${reason}. Install it with "npm install --ignore-scripts onnxruntime-node".`);
      }
      log.info(`classification: TensorFlow.js (${reason}).`);
      return 'tfjs';
    }
    try {
      this.onnx = await OnnxModel.create(await this.onnxSource());
    } catch (error) {
      if (engine === 'onnx' || !(error instanceof UnsupportedLayerError)) {
        throw error;
      }
      log.info(`classification: TensorFlow.js (${error.message})`);
      return 'tfjs';
    }
    log.info(`classification: ONNX Runtime ${onnxRuntimeVersion() ?? ''} (${path.join(this.run.runDir, 'model', RUN_ONNX_FILE)}).`);
    return 'onnx';
  }

  /** Returns the run's ONNX file, exported when missing or stale, or the serialized model when the folder is read-only. */
  private async onnxSource(): Promise<string | Uint8Array> {
    const modelDir = path.join(this.run.runDir, 'model');
    try {
      return await ensureOnnxFile(this.run.fer.model, path.join(modelDir, RUN_ONNX_FILE), path.join(modelDir, 'weights.bin'), {
        metadata: {
          classNames: JSON.stringify(this.run.fer.classNames),
          inputSize: String(this.inputSize),
          preprocessing: this.run.fer.backbone.preprocessing,
          inputLayout: 'NHWC float32, preprocessed',
        },
      });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'EACCES' && code !== 'EROFS' && code !== 'EPERM') {
        throw error;
      }
      log.warn(`onnx: cannot write ${path.join(modelDir, RUN_ONNX_FILE)} (${code}); the export is kept in memory for this process only.`);
      return exportOnnx(this.run.fer.model);
    }
  }

  /** Cuts `region` out of the image and converts it to the model's input pixels, [size, size, 3] uint8. */
  async cropPixels(image: RgbImage, region: Region): Promise<Uint8Array> {
    const size = this.inputSize;
    let pipeline = sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } });
    if (region.left !== 0 || region.top !== 0 || region.width !== image.width || region.height !== image.height) {
      pipeline = pipeline.extract(region);
    }
    pipeline = pipeline.resize({ width: size, height: size, fit: this.fit, background: { r: 0, g: 0, b: 0, alpha: 1 } });
    if (this.colour === 'grey') {
      pipeline = pipeline.greyscale();
    }
    const { data, info } = await pipeline.raw().toBuffer({ resolveWithObject: true });
    if (info.channels === 3) {
      return new Uint8Array(data.buffer, data.byteOffset, data.length);
    }
    const rgb = new Uint8Array(size * size * 3);
    for (let i = 0; i < size * size; i++) {
      const v = data[i * info.channels] as number;
      rgb[i * 3] = v;
      rgb[i * 3 + 1] = v;
      rgb[i * 3 + 2] = v;
    }
    return rgb;
  }

  /** Cuts every region and stacks them into one uint8 NHWC batch. */
  async cropBatch(image: RgbImage, regions: readonly Region[]): Promise<Uint8Array> {
    const perImage = this.inputSize * this.inputSize * 3;
    const pixels = new Uint8Array(regions.length * perImage);
    const crops = await Promise.all(regions.map((region) => this.cropPixels(image, region)));
    crops.forEach((crop, i) => pixels.set(crop, i * perImage));
    return pixels;
  }

  /** Converts a uint8 batch to the preprocessed model input; the caller disposes it. */
  inputTensor(pixels: Uint8Array, count: number): tf.Tensor4D {
    return tf.tidy(() => preprocess(pixelsToTensor(pixels, count, this.inputSize), this.run.fer.backbone.preprocessing));
  }

  /** Reorders one row of model output into canonical class order. */
  toCanonical(row: ArrayLike<number>): Float32Array {
    const out = new Float32Array(CANONICAL_CLASSES.length);
    this.order.forEach((canonical, i) => {
      out[canonical] = row[i] as number;
    });
    return out;
  }

  /** Runs the model on a preprocessed batch; returns one probability vector per image, in canonical order. */
  async predict(input: tf.Tensor4D): Promise<Float32Array[]> {
    const output = this.run.fer.model.predict(input) as tf.Tensor2D;
    try {
      const values = await output.data<'float32'>();
      const k = CANONICAL_CLASSES.length;
      return Array.from({ length: input.shape[0] }, (_, i) => this.toCanonical(values.subarray(i * k, (i + 1) * k)));
    } finally {
      output.dispose();
    }
  }

  /** Classifies a uint8 NHWC batch with the selected engine; returns one probability vector per image, in canonical order. */
  async predictPixels(pixels: Uint8Array, count: number): Promise<Float32Array[]> {
    if (this.onnx === undefined) {
      const input = this.inputTensor(pixels, count);
      try {
        return await this.predict(input);
      } finally {
        input.dispose();
      }
    }
    const size = this.inputSize;
    const values = await this.onnx.run(preprocessPixels(pixels, this.run.fer.backbone.preprocessing), [count, size, size, 3]);
    const k = CANONICAL_CLASSES.length;
    return Array.from({ length: count }, (_, i) => this.toCanonical(values.subarray(i * k, (i + 1) * k)));
  }

  /** Classifies the regions of one image in one batch; returns one probability vector per region, in canonical order. */
  async classify(image: RgbImage, regions: readonly Region[]): Promise<Float32Array[]> {
    if (regions.length === 0) {
      return [];
    }
    return this.predictPixels(await this.cropBatch(image, regions), regions.length);
  }

  /** Releases the ONNX Runtime session, if any; the classifier then uses TensorFlow.js. */
  async dispose(): Promise<void> {
    const session = this.onnx;
    this.onnx = undefined;
    await session?.dispose();
  }
}
