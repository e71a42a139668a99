/**
 * Model-parameter randomisation check for class activation maps (Adebayo et
 * al., "Sanity checks for saliency maps", NeurIPS 2018): a map that explains
 * the model must change when the model's weights are replaced by random ones.
 *
 * A small CNN learns to tell a bright square from a dark one, each placed at
 * a random spot on noise, so the evidence sits at a known place. The trained
 * model's maps must put their mass on the square. The same architecture with
 * re-initialised weights must give maps with a low Spearman rank correlation
 * to the trained ones.
 */
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import { attentionShare, type FaceRegion, type RegionImage, type RegionMask } from '../lib/explain/attention';
import { createCam, type CamMethod, type Explanation } from '../lib/explain/cam';
import { Rng } from '../lib/util/rng';

const SIZE = 32;
const SQUARE = 6;
const TRAIN_IMAGES = 512;
const TEST_IMAGES = 48;

interface SquareImages {
  images: tf.Tensor4D;
  labels: number[];
  /** Top-left corner of each image's square. */
  corners: Array<[number, number]>;
}

/** Noise with one square of +1 (class 0) or -1 (class 1) at a random place. */
function makeImages(count: number, seed: number): SquareImages {
  const rng = new Rng(seed);
  const data = new Float32Array(count * SIZE * SIZE * 3);
  const labels: number[] = [];
  const corners: Array<[number, number]> = [];
  for (let i = 0; i < count; i++) {
    const label = i % 2;
    const top = rng.int(SIZE - SQUARE + 1);
    const left = rng.int(SIZE - SQUARE + 1);
    labels.push(label);
    corners.push([top, left]);
    for (let y = 0; y < SIZE; y++) {
      for (let x = 0; x < SIZE; x++) {
        const inside = y >= top && y < top + SQUARE && x >= left && x < left + SQUARE;
        const value = (inside ? (label === 0 ? 1 : -1) : 0) + rng.uniform(-0.3, 0.3);
        for (let c = 0; c < 3; c++) {
          data[((i * SIZE + y) * SIZE + x) * 3 + c] = value;
        }
      }
    }
  }
  return { images: tf.tensor4d(data, [count, SIZE, SIZE, 3]), labels, corners };
}

function buildModel(seed: number): tf.LayersModel {
  const init = (k: number) => tf.initializers.glorotUniform({ seed: seed * 100 + k });
  const input = tf.input({ shape: [SIZE, SIZE, 3], name: 'input_image' });
  let x = tf.layers.conv2d({ name: 'conv1', filters: 8, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(1) }).apply(input) as tf.SymbolicTensor;
  x = tf.layers.maxPooling2d({ name: 'pool1', poolSize: 2 }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.conv2d({ name: 'conv2', filters: 16, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(2) }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.globalAveragePooling2d({ name: 'pool' }).apply(x) as tf.SymbolicTensor;
  const output = tf.layers.dense({ name: 'probabilities', units: 2, activation: 'softmax', kernelInitializer: init(3) }).apply(x) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: output, name: `squares_${seed}` });
}

/** The square of one image, grown by one pixel on each side, as a region mask. */
class SquareRegion implements FaceRegion {
  readonly description = 'the square, one pixel wider on each side';
  constructor(private readonly corners: ReadonlyArray<[number, number]>) {}

  maskFor(image: RegionImage, height: number, width: number): RegionMask {
    const [top, left] = this.corners[image.index] as [number, number];
    const mask = new Float32Array(height * width);
    let inside = 0;
    for (let y = Math.max(0, top - 1); y < Math.min(height, top + SQUARE + 1); y++) {
      for (let x = Math.max(0, left - 1); x < Math.min(width, left + SQUARE + 1); x++) {
        mask[y * width + x] = 1;
        inside++;
      }
    }
    return { mask, height, width, areaFraction: inside / (height * width) };
  }
}

/** Spearman rank correlation with average ranks for ties. */
function spearman(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const rank = (values: ArrayLike<number>): Float64Array => {
    const order = Array.from({ length: values.length }, (_, i) => i).sort((i, j) => (values[i] as number) - (values[j] as number));
    const ranks = new Float64Array(values.length);
    for (let start = 0; start < order.length; ) {
      let end = start;
      while (end + 1 < order.length && values[order[end + 1] as number] === values[order[start] as number]) {
        end++;
      }
      for (let k = start; k <= end; k++) {
        ranks[order[k] as number] = (start + end) / 2;
      }
      start = end + 1;
    }
    return ranks;
  };
  const ra = rank(a);
  const rb = rank(b);
  const mean = (ra.length - 1) / 2;
  let cov = 0;
  let va = 0;
  let vb = 0;
  for (let i = 0; i < ra.length; i++) {
    cov += ((ra[i] as number) - mean) * ((rb[i] as number) - mean);
    va += ((ra[i] as number) - mean) ** 2;
    vb += ((rb[i] as number) - mean) ** 2;
  }
  return cov / Math.sqrt(va * vb);
}

function mean(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

let trained: tf.LayersModel;
let randomised: tf.LayersModel;
let test: SquareImages;
let accuracy: number;

beforeAll(async () => {
  await initBackend('node');
  const train = makeImages(TRAIN_IMAGES, 1);
  test = makeImages(TEST_IMAGES, 2);
  trained = buildModel(1);
  trained.compile({ optimizer: tf.train.adam(0.01), loss: 'sparseCategoricalCrossentropy', metrics: ['accuracy'] });
  const labels = tf.tensor1d(train.labels, 'float32');
  await trained.fit(train.images, labels, { epochs: 8, batchSize: 32, shuffle: false, verbose: 0 });
  labels.dispose();
  train.images.dispose();

  const probabilities = trained.predict(test.images) as tf.Tensor2D;
  const predicted = (await probabilities.argMax(1).array()) as number[];
  probabilities.dispose();
  accuracy = predicted.filter((p, i) => p === test.labels[i]).length / TEST_IMAGES;

  // Re-initialised: the same architecture and layer names with other seeds, never trained.
  randomised = buildModel(2);
}, 300_000);

describe.each<CamMethod>(['gradcam', 'gradcam++'])('%s under weight randomisation', (method) => {
  let trainedMaps: Explanation[];
  let randomMaps: Explanation[];

  beforeAll(async () => {
    trainedMaps = await createCam(method, trained, { layer: 'conv2' }).explain(test.images, { targetClasses: test.labels });
    randomMaps = await createCam(method, randomised, { layer: 'conv2' }).explain(test.images, { targetClasses: test.labels });
  });

  it('trained model learned the task', () => {
    expect(accuracy).toBeGreaterThanOrEqual(0.95);
  });

  it('trained maps sit on the square', () => {
    const region = new SquareRegion(test.corners);
    const shares = trainedMaps.map((e, i) => attentionShare(e.heatmap, region.maskFor({ index: i }, e.height, e.width)));
    const area = region.maskFor({ index: 0 }, SIZE, SIZE).areaFraction;
    // The grown square covers at most 64 of 1024 pixels; a uniform map would put at most 6% of its mass there.
    expect(mean(shares.filter((s) => !Number.isNaN(s)))).toBeGreaterThan(5 * area);
  });

  it('randomised maps differ from trained ones', () => {
    const pairs = trainedMaps.map((e, i) => [e, randomMaps[i] as Explanation] as const).filter(([a, b]) => a.rawMax > 0 && b.rawMax > 0);
    // Most images need a non-empty map from both models, because an empty map has no ranks to correlate.
    expect(pairs.length).toBeGreaterThanOrEqual(TEST_IMAGES / 2);
    const correlations = pairs.map(([a, b]) => spearman(a.heatmap, b.heatmap));
    const meanCorrelation = mean(correlations);
    console.log(`${method}: mean Spearman correlation trained vs randomised ${meanCorrelation.toFixed(3)} over ${pairs.length} images`);
    expect(meanCorrelation).toBeLessThan(0.5);
  });
});
