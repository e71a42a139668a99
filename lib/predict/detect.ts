/**
 * Face detection at a bounded resolution with face-api's detectors.
 *
 * The detector never receives the full-resolution photo. One pass runs on a copy
 * scaled down to the detector's network input (512 pixels for SSD MobileNet
 * v1, 416 for the Tiny Face Detector), so detection costs the same for a
 * 1920-pixel and a 6000-pixel photo. A detectSize above the network input
 * adds a pass over overlapping network-sized tiles of a copy scaled to
 * detectSize, which finds faces too small for the first pass at the cost of
 * one detector run per tile. Boxes are mapped back to the coordinates of the
 * original image.
 */
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';

import { loadFaceApiNet, type Box } from './faceapi';
import { mergeDetections, tileGrid, touchesInnerEdge, transformBox, clipBox, type Detection, type Region } from './geometry';

/** 8-bit RGB pixels, row-major HWC. */
export interface RgbImage {
  data: Uint8Array;
  height: number;
  width: number;
}

export const DETECTORS = ['ssd', 'tiny'] as const;
export type DetectorName = (typeof DETECTORS)[number];

/** Network input side of each detector in pixels; SSD's is fixed by face-api, the Tiny Face Detector's is face-api's default. */
export const DETECTOR_INPUT_SIZE: Record<DetectorName, number> = { ssd: 512, tiny: 416 };

/** Smallest detectSize accepted, in pixels. */
export const MIN_DETECT_SIZE = 128;

export interface FaceDetectorOptions {
  /** Default 'ssd': higher scores and tighter boxes than 'tiny', at about 3x its cost. */
  detector?: DetectorName;
  /** Smallest detector score kept, in (0, 1); default 0.5. */
  minScore?: number;
  /**
   * Maximum length, in pixels, of the longer side of the photo copy that the
   * detector searches. Default: the detector's network input, one pass.
   * Larger values add a tiled pass for small faces.
   */
  detectSize?: number;
  /** Folder with face-api's weight files; default the package's model/ folder. */
  modelDir?: string;
}

/** Share of the longer side added as a grey border on each side for the face-crop check. */
const CROP_CHECK_PADDING = 0.6;

/** Smallest share of the image area that a face found by the face-crop check must cover. */
const CROP_CHECK_MIN_COVER = 0.2;

const CROP_CHECK_BACKGROUND = { r: 128, g: 128, b: 128 };

/** Tile overlap as a share of the tile side: faces up to this size at detectSize lie whole inside some tile. */
const TILE_OVERLAP = 0.25;

/** Most detections each detector run returns. */
const MAX_RESULTS = 200;

export class FaceDetector {
  readonly detector: DetectorName;
  readonly minScore: number;
  readonly detectSize: number;
  /** Side of the detector network's input in pixels. */
  readonly inputSize: number;

  private constructor(
    options: Required<Omit<FaceDetectorOptions, 'modelDir'>>,
    private readonly locate: (input: tf.Tensor3D, minScore: number) => Promise<Detection[]>,
  ) {
    this.detector = options.detector;
    this.minScore = options.minScore;
    this.detectSize = options.detectSize;
    this.inputSize = Math.min(DETECTOR_INPUT_SIZE[options.detector], options.detectSize);
  }

  /** Validates the options and loads the detector's weights. */
  static async load(options: FaceDetectorOptions = {}): Promise<FaceDetector> {
    const detector = options.detector ?? 'ssd';
    if (!DETECTORS.includes(detector)) {
      throw new RangeError(`Invalid detector "${String(detector)}": expected one of ${DETECTORS.join(', ')}.`);
    }
    const minScore = options.minScore ?? 0.5;
    if (!(minScore > 0 && minScore < 1)) {
      throw new RangeError(`Invalid minimum detector score ${minScore}: expected a number between 0 and 1 (exclusive).`);
    }
    const detectSize = options.detectSize ?? DETECTOR_INPUT_SIZE[detector];
    if (!Number.isInteger(detectSize) || detectSize < MIN_DETECT_SIZE) {
      throw new RangeError(`Invalid detection size ${detectSize}: expected an integer of at least ${MIN_DETECT_SIZE} pixels.`);
    }

    let locate: (input: tf.Tensor3D, score: number) => Promise<Detection[]>;
    if (detector === 'ssd') {
      const net = await loadFaceApiNet('ssdMobilenetv1', options.modelDir);
      locate = (input, score) => net.locateFaces(input, { minConfidence: score, maxResults: MAX_RESULTS });
    } else {
      const net = await loadFaceApiNet('tinyFaceDetector', options.modelDir);
      // The Tiny Face Detector's input must be a multiple of 32; a detectSize below 416 also shrinks the network input.
      const inputSize = Math.max(32, Math.floor(Math.min(DETECTOR_INPUT_SIZE.tiny, detectSize) / 32) * 32);
      locate = (input, score) => net.locateFaces(input, { inputSize, scoreThreshold: score });
    }
    const wrapped = async (input: tf.Tensor3D, score: number): Promise<Detection[]> =>
      (await locate(input, score)).map((d) => ({ score: d.score, box: { x: d.box.x, y: d.box.y, width: d.box.width, height: d.box.height } }));
    return new FaceDetector({ detector, minScore, detectSize }, wrapped);
  }

  /**
   * Finds the faces in an image. Returns detections with a score of at least
   * minScore, boxes in the image's pixel coordinates clipped to it, by
   * descending score.
   */
  async detect(image: RgbImage): Promise<Detection[]> {
    const longest = Math.max(image.width, image.height);
    const found: Detection[] = [];

    const whole = await scaleToLongestSide(image, Math.min(longest, this.inputSize));
    const wholeFactor = image.width / whole.width;
    for (const d of await this.run(whole)) {
      found.push({ score: d.score, box: transformBox(d.box, wholeFactor) });
    }

    if (Math.min(longest, this.detectSize) > this.inputSize) {
      const working = await scaleToLongestSide(image, Math.min(longest, this.detectSize));
      const factor = image.width / working.width;
      const tile = DETECTOR_INPUT_SIZE[this.detector];
      for (const region of tileGrid(working.width, working.height, tile, Math.round(tile * TILE_OVERLAP))) {
        const pixels = await extractRegion(working, region);
        for (const d of await this.run(pixels)) {
          if (!touchesInnerEdge(d.box, region, working.width, working.height)) {
            found.push({ score: d.score, box: transformBox(d.box, factor, region.left * factor, region.top * factor) });
          }
        }
      }
    }

    return mergeDetections(found).map((d) => ({ score: d.score, box: clipBox(d.box, image.width, image.height) }));
  }

  /**
   * Checks whether the image is itself a crop of one face: detectors often
   * miss a face that fills the frame, because they learned faces with some
   * surroundings. The image is scaled down, framed by a grey border of
   * CROP_CHECK_PADDING of its longer side, and searched again. Returns the
   * best detection whose box covers at least CROP_CHECK_MIN_COVER of the
   * image, in image coordinates, or undefined.
   */
  async detectFaceCrop(image: RgbImage): Promise<Detection | undefined> {
    const longest = Math.max(image.width, image.height);
    const scale = this.inputSize / (longest * (1 + 2 * CROP_CHECK_PADDING));
    const width = Math.max(1, Math.round(image.width * scale));
    const height = Math.max(1, Math.round(image.height * scale));
    const pad = Math.round(Math.max(width, height) * CROP_CHECK_PADDING);
    const { data, info } = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
      .resize({ width, height, fit: 'fill' })
      .extend({ top: pad, bottom: pad, left: pad, right: pad, background: CROP_CHECK_BACKGROUND })
      .raw()
      .toBuffer({ resolveWithObject: true });
    const framed: RgbImage = { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };

    const factor = image.width / width;
    const imageArea = image.width * image.height;
    for (const d of await this.run(framed)) {
      const box = clipBox(transformBox(d.box, factor, -pad * factor, -pad * factor), image.width, image.height);
      if ((box.width * box.height) / imageArea >= CROP_CHECK_MIN_COVER) {
        return { score: d.score, box };
      }
    }
    return undefined;
  }

  /** Runs the detector on one image; returns detections by descending score in that image's coordinates. */
  private async run(image: RgbImage): Promise<Detection[]> {
    const input = tf.tensor3d(image.data, [image.height, image.width, 3], 'int32');
    try {
      const detections = await this.locate(input, this.minScore);
      return detections.sort((a, b) => b.score - a.score);
    } finally {
      input.dispose();
    }
  }
}

/** Scales an image so that its longer side is `side` pixels; returns the image itself when it already is. */
async function scaleToLongestSide(image: RgbImage, side: number): Promise<RgbImage> {
  const longest = Math.max(image.width, image.height);
  if (longest === side) {
    return image;
  }
  const scale = side / longest;
  const width = Math.max(1, Math.round(image.width * scale));
  const height = Math.max(1, Math.round(image.height * scale));
  const { data, info } = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .resize({ width, height, fit: 'fill' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
}

async function extractRegion(image: RgbImage, region: Region): Promise<RgbImage> {
  if (region.left === 0 && region.top === 0 && region.width === image.width && region.height === image.height) {
    return image;
  }
  const { data, info } = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .extract(region)
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
}

export type { Box, Detection };
