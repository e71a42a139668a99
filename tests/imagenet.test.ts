/**
 * Proof that the pretrained weights load into our Keras-compatible backbones:
 * the MobileNet v1 ImageNet heads classify four standard photos correctly,
 * and the same architecture with random weights does not.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import { decodeImage } from '../lib/data/decode';
import { pixelsToTensor, preprocess } from '../lib/data/preprocess';
import { createModel } from '../lib/models/factory';
import { registerBuiltins } from '../lib/models/catalog';
import { getBackbone } from '../lib/models/registry';
import { assignWeights, readTfjsWeights } from '../lib/models/weights';
import { resolveWeightsDir } from '../lib/paths';

const WEIGHTS = resolveWeightsDir();
const SAMPLES = process.env.IMAGENET_SAMPLES ?? path.resolve(WEIGHTS, '..', '..', 'images', 'imagenet-samples');

/** ImageNet class indices (0-999) that count as a correct answer for each photo. */
const EXPECTED: Record<string, { labels: number[]; description: string }> = {
  cat: { labels: [281, 282, 285], description: 'tabby, tiger cat or Egyptian cat' },
  bird: { labels: [19], description: 'chickadee' },
  dragonfly: { labels: [319], description: 'dragonfly' },
  grace_hopper: { labels: [652], description: 'military uniform' },
};

let labelNames: string[] = [];

function samplesDir(): string {
  for (const candidate of [SAMPLES, path.resolve('../shared/images/imagenet-samples')]) {
    if (fs.existsSync(path.join(candidate, 'imagenet_labels.txt'))) {
      return candidate;
    }
  }
  throw new Error(`ImageNet sample photos not found at ${SAMPLES}; set IMAGENET_SAMPLES to the folder with cat.bmp and imagenet_labels.txt.`);
}

async function imageBatch(dir: string): Promise<tf.Tensor4D> {
  const pixels: Uint8Array[] = [];
  for (const name of Object.keys(EXPECTED)) {
    const image = await decodeImage(path.join(dir, `${name}.bmp`), { size: 224, fit: 'cover' });
    expect(image.channels).toBe(3);
    pixels.push(image.data);
  }
  const joined = new Uint8Array(pixels.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of pixels) {
    joined.set(p, offset);
    offset += p.length;
  }
  return preprocess(pixelsToTensor(joined, pixels.length, 224), 'tf');
}

async function imagenetModel(backbone: string, folder: string | undefined): Promise<tf.LayersModel> {
  registerBuiltins();
  const spec = getBackbone(backbone);
  const input = tf.input({ shape: [224, 224, 3] });
  const built = spec.build(input, { includeTop: true });
  const model = tf.model({ inputs: input, outputs: built.top as tf.SymbolicTensor });
  if (folder !== undefined) {
    const weights = await readTfjsWeights(path.join(WEIGHTS, folder));
    const report = assignWeights(model, weights, { requireAll: true });
    expect(report.unused).toEqual([]);
  }
  return model;
}

function topK(row: Float32Array, k: number): number[] {
  return Array.from(row.keys())
    .sort((a, b) => (row[b] as number) - (row[a] as number))
    .slice(0, k);
}

beforeAll(async () => {
  await initBackend('node');
  const dir = samplesDir();
  // The label file starts with "background", so Keras class i is line i + 1.
  labelNames = fs.readFileSync(path.join(dir, 'imagenet_labels.txt'), 'utf8').split('\n').slice(1);
});

describe.each([
  ['MobileNet-0.25', 'mobilenet_v1_0.25_224', 475_544],
  ['MobileNet-0.75', 'mobilenet_v1_0.75_224', 2_601_976],
])('%s ImageNet head', (backbone, folder, params) => {
  let probabilities: Float32Array;

  beforeAll(async () => {
    const model = await imagenetModel(backbone, folder);
    expect(model.countParams()).toBe(params);
    const output = model.predict(await imageBatch(samplesDir())) as tf.Tensor;
    probabilities = output.dataSync() as Float32Array;
  });

  it.each(Object.keys(EXPECTED))('ranks the right class for %s', (name) => {
    const index = Object.keys(EXPECTED).indexOf(name);
    const row = probabilities.subarray(index * 1000, (index + 1) * 1000);
    const top5 = topK(row, 5);
    const names = top5.map((i) => labelNames[i]).join('; ');
    const expected = EXPECTED[name] as { labels: number[]; description: string };
    expect(
      top5.some((i) => expected.labels.includes(i)),
      `${name}: expected ${expected.description} in the top 5, got ${names}`,
    ).toBe(true);
  });

  it('puts the cat and the bird first', () => {
    const cat = topK(probabilities.subarray(0, 1000), 1)[0] as number;
    const bird = topK(probabilities.subarray(1000, 2000), 1)[0] as number;
    expect(EXPECTED.cat?.labels).toContain(cat);
    expect(bird).toBe(19);
  });
});

describe('random weights', () => {
  it('fail the same photos', async () => {
    const model = await imagenetModel('MobileNet-0.25', undefined);
    const output = model.predict(await imageBatch(samplesDir())) as tf.Tensor;
    const rows = output.dataSync() as Float32Array;
    const hits = Object.values(EXPECTED).filter((expected, i) => {
      const top1 = topK(rows.subarray(i * 1000, (i + 1) * 1000), 1)[0] as number;
      return expected.labels.includes(top1);
    });
    expect(hits.length).toBeLessThan(2);
  });
});

describe('MobileNetV2-0.35 base', () => {
  it('loads every base weight of the export', async () => {
    const fer = await createModel('MobileNetV2-0.35', { inputSize: 224, weightsDir: WEIGHTS });
    expect(fer.weightsReport?.missing).toEqual([]);
    // 260 base tensors: the Teachable Machine head's tensors stay unused.
    expect(fer.weightsReport?.assigned).toHaveLength(260);
  });

  it('has the Keras base parameter count', async () => {
    registerBuiltins();
    const input = tf.input({ shape: [224, 224, 3] });
    const { features } = getBackbone('MobileNetV2-0.35').build(input);
    expect(tf.model({ inputs: input, outputs: features }).countParams()).toBe(410_208);
  });
});
