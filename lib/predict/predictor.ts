/**
 * Emotion prediction on photos: detect every face, crop each with a margin,
 * classify the crops in one batch with a trained run, and optionally explain
 * each face with a Grad-CAM overlay.
 */
import sharp from 'sharp';

import { CANONICAL_CLASSES, type EmotionClass } from '../classes';
import { readImageRgb } from '../data/decode';
import { createCam, type ClassActivationMap } from '../explain/cam';
import { renderOverlay } from '../explain/overlay';
import type { LoadedRun } from '../train/load_run';
import { FaceClassifier, type ClassifierEngine, type ColourMode } from './classify';
import { FaceDetector, type DetectorName, type FaceDetectorOptions, type RgbImage } from './detect';
import type { Box } from './faceapi';
import { cropRegion, regionToBox, type Detection, type Region } from './geometry';

export const FALLBACK_MODES = ['auto', 'always', 'never'] as const;
/**
 * Handling of an image in which no face passes the detector's minimum
 * score. 'auto' classifies the whole image when the face-crop check finds
 * that the image is itself a face crop, and otherwise reports no faces.
 * 'always' classifies the whole image, for folders of face crops the detector
 * cannot confirm (48-pixel FER-2013 crops among them). 'never' reports no faces.
 */
export type FallbackMode = (typeof FALLBACK_MODES)[number];

export interface PredictorOptions extends FaceDetectorOptions {
  /** Margin added on each side of the square around a face box, as a share of its side; default 0.2. */
  margin?: number;
  /** Default 'auto'. */
  fallback?: FallbackMode;
  /** Default 'grey'. */
  colour?: ColourMode;
  /** Computes a Grad-CAM overlay per face. */
  explain?: boolean;
  /** Length of each Grad-CAM overlay's longer side in pixels; default 224. */
  explainSize?: number;
  /**
   * Runtime of the emotion model; default the FER_CLASSIFIER_ENGINE
   * environment variable, else 'auto' (ONNX Runtime when it loads).
   * Explanations need gradients, so with `explain` the model always runs on TensorFlow.js.
   */
  engine?: ClassifierEngine;
}

export interface FaceResult {
  /** Detector box (or the whole image for a fallback) in pixels of the EXIF-oriented image. */
  box: Box;
  /** Region that was classified: the box squared, grown by the margin and clamped to the image. */
  cropBox: Box;
  /** Detector score, or null when the whole image was classified without a detection. */
  score: number | null;
  label: EmotionClass;
  /** Probability of `label`. */
  confidence: number;
  /** Class probabilities in canonical class order. */
  probabilities: Record<EmotionClass, number>;
}

export interface ImageResult {
  /** Width and height after EXIF orientation, in pixels. */
  width: number;
  height: number;
  detector: DetectorName;
  /** 'whole-image' when no face passed the detector and the whole image was classified. */
  fallback: 'whole-image' | null;
  faces: FaceResult[];
}

export interface FaceExplanation {
  /** The face crop with the Grad-CAM heatmap blended on. */
  overlay: RgbImage;
  method: string;
  layerName: string;
}

export interface Prediction {
  result: ImageResult;
  /** One per face when the predictor explains, in `result.faces` order. */
  explanations?: FaceExplanation[];
  /** Milliseconds spent detecting (including the face-crop check) and classifying. */
  detectMs: number;
  classifyMs: number;
}

export class Predictor {
  readonly margin: number;
  readonly fallback: FallbackMode;
  private readonly explainSize: number;

  private constructor(
    readonly detector: FaceDetector,
    readonly classifier: FaceClassifier,
    private readonly cam: ClassActivationMap | undefined,
    options: PredictorOptions,
  ) {
    this.margin = options.margin ?? 0.2;
    this.fallback = options.fallback ?? 'auto';
    this.explainSize = options.explainSize ?? 224;
  }

  /**
   * Checks the options and the run's class list, and loads the detector.
   * Throws ClassListMismatchError for a run whose classes are not the
   * canonical seven.
   */
  static async create(run: LoadedRun, options: PredictorOptions = {}): Promise<Predictor> {
    const margin = options.margin ?? 0.2;
    if (!(margin >= 0 && margin <= 2)) {
      throw new RangeError(`Invalid crop margin ${margin}: expected a share of the face box from 0 to 2.`);
    }
    const fallback = options.fallback ?? 'auto';
    if (!FALLBACK_MODES.includes(fallback)) {
      throw new RangeError(`Invalid fallback "${String(fallback)}": expected one of ${FALLBACK_MODES.join(', ')}.`);
    }
    const explainSize = options.explainSize ?? 224;
    if (!Number.isInteger(explainSize) || explainSize < 16) {
      throw new RangeError(`Invalid explanation size ${explainSize}: expected an integer of at least 16 pixels.`);
    }
    const classifier = new FaceClassifier(run, options.colour !== undefined ? { colour: options.colour } : {});
    const engine = options.engine ?? ((process.env.FER_CLASSIFIER_ENGINE as ClassifierEngine | undefined) || 'auto');
    await classifier.selectEngine(options.explain === true ? 'tfjs' : engine);
    const detector = await FaceDetector.load(options);
    const cam = options.explain === true ? createCam('gradcam', run.fer) : undefined;
    return new Predictor(detector, classifier, cam, options);
  }

  /** Decodes a file to RGB with EXIF orientation applied; throws ImageDecodeError naming the file. */
  async decode(file: string): Promise<RgbImage> {
    return readImageRgb(file);
  }

  /** Detects and classifies the faces of a decoded image. */
  async predict(image: RgbImage): Promise<Prediction> {
    const detectStart = performance.now();
    let detections: Detection[] = await this.detector.detect(image);
    let fallback: ImageResult['fallback'] = null;
    let regions: Region[];
    if (detections.length === 0 && this.fallback !== 'never') {
      const crop = this.fallback === 'auto' ? await this.detector.detectFaceCrop(image) : undefined;
      if (this.fallback === 'always' || crop !== undefined) {
        fallback = 'whole-image';
        detections = [{ box: { x: 0, y: 0, width: image.width, height: image.height }, score: crop?.score ?? Number.NaN }];
      }
    }
    if (fallback === 'whole-image') {
      regions = [{ left: 0, top: 0, width: image.width, height: image.height }];
    } else {
      regions = detections.map((d) => cropRegion(d.box, this.margin, image.width, image.height));
    }
    const detectMs = performance.now() - detectStart;

    const classifyStart = performance.now();
    let probabilities: Float32Array[] = [];
    let explanations: FaceExplanation[] | undefined;
    if (regions.length > 0 && this.cam === undefined) {
      probabilities = await this.classifier.classify(image, regions);
    } else if (regions.length > 0) {
      const input = this.classifier.inputTensor(await this.classifier.cropBatch(image, regions), regions.length);
      try {
        probabilities = await this.classifier.predict(input);
        explanations = await this.explain(image, regions, input);
      } finally {
        input.dispose();
      }
    } else if (this.cam !== undefined) {
      explanations = [];
    }
    const classifyMs = performance.now() - classifyStart;

    const faces = detections.map((detection, i) => faceResult(detection, regions[i] as Region, probabilities[i] as Float32Array));
    return {
      result: { width: image.width, height: image.height, detector: this.detector.detector, fallback, faces },
      ...(explanations !== undefined ? { explanations } : {}),
      detectMs,
      classifyMs,
    };
  }

  private async explain(image: RgbImage, regions: readonly Region[], input: Parameters<ClassActivationMap['explain']>[0]): Promise<FaceExplanation[]> {
    const cam = this.cam as ClassActivationMap;
    const maps = await cam.explain(input);
    const size = this.classifier.inputSize;
    const out: FaceExplanation[] = [];
    for (const [i, map] of maps.entries()) {
      const region = regions[i] as Region;
      const crop = await extractRgb(image, region);
      const scale = this.explainSize / Math.max(region.width, region.height);
      const rendered = await renderOverlay(
        crop,
        { data: map.heatmap, height: map.height, width: map.width },
        { width: size, height: size },
        {
          fit: this.classifier.fit,
          width: Math.max(1, Math.round(region.width * scale)),
          height: Math.max(1, Math.round(region.height * scale)),
        },
      );
      out.push({ overlay: rendered.overlay, method: map.method, layerName: map.layerName });
    }
    return out;
  }
}

function faceResult(detection: Detection, region: Region, probabilities: Float32Array): FaceResult {
  let best = 0;
  for (let i = 1; i < probabilities.length; i++) {
    if ((probabilities[i] as number) > (probabilities[best] as number)) {
      best = i;
    }
  }
  const byClass = Object.fromEntries(CANONICAL_CLASSES.map((name, i) => [name, round6(probabilities[i] as number)])) as Record<EmotionClass, number>;
  return {
    box: detection.box,
    cropBox: regionToBox(region),
    score: Number.isNaN(detection.score) ? null : round6(detection.score),
    label: CANONICAL_CLASSES[best] as EmotionClass,
    confidence: round6(probabilities[best] as number),
    probabilities: byClass,
  };
}

function round6(value: number): number {
  return Math.round(value * 1e6) / 1e6;
}

async function extractRgb(image: RgbImage, region: Region): Promise<RgbImage> {
  const { data, info } = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .extract(region)
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
}
