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
import type { LoadedRun } from '../train/load_run';
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

export interface FaceClassifierOptions {
  /** Default 'grey'. */
  colour?: ColourMode;
}

export class FaceClassifier {
  readonly inputSize: number;
  readonly fit: ResizeFit;
  readonly colour: ColourMode;
  private readonly order: number[];

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

  /** Classifies the regions of one image in one batch; returns one probability vector per region, in canonical order. */
  async classify(image: RgbImage, regions: readonly Region[]): Promise<Float32Array[]> {
    if (regions.length === 0) {
      return [];
    }
    const input = this.inputTensor(await this.cropBatch(image, regions), regions.length);
    try {
      return await this.predict(input);
    } finally {
      input.dispose();
    }
  }
}
