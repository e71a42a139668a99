/**
 * Measured attention: the share of a heatmap's mass that falls inside the
 * face region of the model input.
 *
 * The region is an interface that returns one mask per image, so masks from
 * detected landmarks can replace the fixed central region without changing
 * how the share is computed or stored.
 */

/** A binary or soft mask in [0, 1] over the model input, row-major [height * width]. */
export interface RegionMask {
  mask: Float32Array;
  height: number;
  width: number;
  /** Mean of the mask: the share a uniform heatmap would get. */
  areaFraction: number;
}

/** An explained image as a face region sees it: its position in the explained list and its file. */
export interface RegionImage {
  index: number;
  path?: string;
}

/** Source of the face region of each explained image. */
export interface FaceRegion {
  /** Short description written into the outputs, e.g. "central ellipse 70% x 80%". */
  readonly description: string;
  /** Returns the region of one image at the heatmap's size. */
  maskFor(image: RegionImage, height: number, width: number): RegionMask;
}

export type RegionShape = 'ellipse' | 'box';

export interface CentralRegionOptions {
  shape?: RegionShape;
  /** Region width as a fraction of the image width; default 0.7. */
  widthFraction?: number;
  /** Region height as a fraction of the image height; default 0.8. */
  heightFraction?: number;
}

/**
 * The centred ellipse (or box) of an aligned face crop. FER-2013 and
 * similar datasets centre the face and fill most of the frame with it, so the
 * eyes, nose and mouth lie in the inner part while the borders hold hair,
 * ears, background and neck. The default ellipse spans the inner 70% of the
 * width and 80% of the height and covers pi * 0.35 * 0.4 = 44% of the image;
 * an ellipse follows the face outline and leaves out the corners, which are
 * background in a face crop.
 */
export class CentralFaceRegion implements FaceRegion {
  readonly shape: RegionShape;
  readonly widthFraction: number;
  readonly heightFraction: number;
  private readonly cache = new Map<string, RegionMask>();

  constructor(options: CentralRegionOptions = {}) {
    this.shape = options.shape ?? 'ellipse';
    this.widthFraction = options.widthFraction ?? 0.7;
    this.heightFraction = options.heightFraction ?? 0.8;
    for (const [name, value] of [
      ['width', this.widthFraction],
      ['height', this.heightFraction],
    ] as const) {
      if (!(value > 0 && value <= 1)) {
        throw new RangeError(`Invalid face region ${name} fraction ${value}: expected a number in (0, 1].`);
      }
    }
    if (this.shape !== 'ellipse' && this.shape !== 'box') {
      throw new RangeError(`Invalid face region shape ${JSON.stringify(this.shape)}: expected 'ellipse' or 'box'.`);
    }
  }

  get description(): string {
    const percent = (f: number) => `${Math.round(f * 1000) / 10}%`;
    const area = this.shape === 'ellipse' ? (Math.PI / 4) * this.widthFraction * this.heightFraction : this.widthFraction * this.heightFraction;
    return `central ${this.shape} ${percent(this.widthFraction)} of width x ${percent(this.heightFraction)} of height (${percent(area)} of the image)`;
  }

  maskFor(_image: RegionImage, height: number, width: number): RegionMask {
    const key = `${height}x${width}`;
    const cached = this.cache.get(key);
    if (cached !== undefined) {
      return cached;
    }
    const mask = new Float32Array(height * width);
    const rx = this.widthFraction / 2;
    const ry = this.heightFraction / 2;
    let inside = 0;
    for (let y = 0; y < height; y++) {
      // Pixel centres in coordinates where the image spans [0, 1].
      const dy = (y + 0.5) / height - 0.5;
      for (let x = 0; x < width; x++) {
        const dx = (x + 0.5) / width - 0.5;
        const within = this.shape === 'ellipse' ? (dx / rx) ** 2 + (dy / ry) ** 2 <= 1 : Math.abs(dx) <= rx && Math.abs(dy) <= ry;
        if (within) {
          mask[y * width + x] = 1;
          inside++;
        }
      }
    }
    const region = { mask, height, width, areaFraction: inside / (height * width) };
    this.cache.set(key, region);
    return region;
  }
}

/**
 * Computes sum(heatmap * mask) / sum(heatmap) for a non-negative heatmap.
 * Returns NaN for an all-zero heatmap, which puts its mass nowhere.
 */
export function attentionShare(heatmap: ArrayLike<number>, region: RegionMask): number {
  if (heatmap.length !== region.mask.length) {
    throw new RangeError(
      `Heatmap of ${heatmap.length} values does not match the ${region.height}x${region.width} region mask; compute the mask at the heatmap's size.`,
    );
  }
  let total = 0;
  let inside = 0;
  for (let i = 0; i < heatmap.length; i++) {
    const value = heatmap[i] as number;
    if (value < 0) {
      throw new RangeError(`Heatmap value ${value} at index ${i} is negative; attention shares need a non-negative map.`);
    }
    total += value;
    inside += value * (region.mask[i] as number);
  }
  return total > 0 ? inside / total : Number.NaN;
}

/**
 * Default share at or above which attention counts as focused on the face.
 * A uniform heatmap gets 0.44 from the default ellipse, and 0.65 is about 1.5
 * times that, so a map must put clearly more mass on the face than the
 * region's area alone would give it.
 *
 * NOTE: the value follows from the uniform-map share and is not calibrated on
 * data. Coarse maps pull shares towards the area fraction: with the 5x5 map of
 * MobileNet-0.25 at 160x160 pixels, briefly trained, the FER-2013 test split
 * gave a median share of 0.52 and a 90th percentile of 0.63.
 */
export const DEFAULT_FOCUS_THRESHOLD = 0.65;

export type AttentionCategory = 'correct_focused' | 'correct_misplaced' | 'misclassified';

/**
 * Sorts an explained prediction into a gallery. A correct prediction with an
 * empty map (share NaN) counts as misplaced, because no face pixel raised the score.
 */
export function categorise(correct: boolean, share: number, threshold: number): AttentionCategory {
  if (!correct) {
    return 'misclassified';
  }
  return share >= threshold ? 'correct_focused' : 'correct_misplaced';
}
