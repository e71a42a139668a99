/**
 * Structure of every registered backbone: the Grad-CAM layer, the block map
 * that partial fine-tuning relies on, Keras's parameter counts, and the
 * study's configurations and reported model sizes.
 */
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import { registerBuiltins } from '../lib/models/catalog';
import { createModel } from '../lib/models/factory';
import { getConfiguration, listBackbones } from '../lib/models/registry';
import type { BackboneSpec } from '../lib/models/types';

/**
 * Small input that every backbone accepts. Without the top, a backbone's
 * parameter count does not depend on the input size, so it equals Keras's
 * count at 224x224.
 */
const INPUT_SIZE = 64;

registerBuiltins();
const backbones = listBackbones();

beforeAll(async () => {
  await initBackend('node');
});

describe.each(backbones.map((spec) => [spec.name, spec] as const))('%s', (_name, spec: BackboneSpec) => {
  let model: tf.LayersModel;

  beforeAll(() => {
    const input = tf.input({ shape: [INPUT_SIZE, INPUT_SIZE, 3] });
    model = tf.model({ inputs: input, outputs: spec.build(input).features });
    return () => model.dispose();
  });

  it('has a 4-D last conv layer', () => {
    const layer = model.getLayer(spec.lastConvLayer);
    const shape = layer.outputShape as number[];
    expect(shape, `${spec.lastConvLayer} output shape`).toHaveLength(4);
  });

  it('puts every weighted layer in a block', () => {
    const outside = model.layers.filter((l) => l.weights.length > 0 && !spec.blocks.includes(spec.blockOf(l.name) ?? '')).map((l) => l.name);
    expect(outside).toEqual([]);
  });

  it('puts every layer but the input in a block', () => {
    const outside = model.layers.filter((l) => l.getClassName() !== 'InputLayer' && spec.blockOf(l.name) === undefined).map((l) => l.name);
    expect(outside).toEqual([]);
  });

  it('lists blocks from input to output', () => {
    // tfjs orders model.layers so that a layer comes after every layer it
    // depends on; block indices must therefore never decrease along it.
    const layers = model.layers.filter((l) => l.getClassName() !== 'InputLayer');
    const indices = layers.map((l) => spec.blocks.indexOf(spec.blockOf(l.name) ?? ''));
    const outOfOrder = layers.filter((_, i) => i > 0 && (indices[i] as number) < (indices[i - 1] as number)).map((l) => l.name);
    expect(outOfOrder).toEqual([]);
    expect(new Set(indices).size, 'blocks without layers').toBe(spec.blocks.length);
  });

  it('has the Keras parameter count', () => {
    expect(spec.kerasParamsNoTop, 'kerasParamsNoTop is not set').toBeDefined();
    expect(model.countParams()).toBe(spec.kerasParamsNoTop);
  });
});

describe('study configurations', () => {
  it.each([
    ['VGG16', 128, 1e-5],
    ['VGG19', 128, 1e-5],
    ['ResNet50V2', 512, 1e-4],
    ['ResNet101V2', 512, 1e-4],
    ['ResNet152V2', 512, 1e-4],
  ])('%s uses the study protocol', (name, batchSize, fineTuneRate) => {
    const config = getConfiguration(name);
    expect(config.backbone).toBe(name);
    expect(config.dense).toEqual([512]);
    expect(config.batchSize).toBe(batchSize);
    expect(config.phase1.learningRate).toBe(1e-3);
    expect(config.phase2.learningRate).toBe(fineTuneRate);
  });

  // The study reports millions of parameters with one decimal, truncated:
  // VGG16 has 14.98M with its head and is reported as 14.9M.
  it.each([
    ['VGG16', 14.9],
    ['VGG19', 20.2],
    ['ResNet152V2', 59.3],
  ])('%s has the reported total of %sM parameters', async (name, reported) => {
    const fer = await createModel(name, { weights: 'random', inputSize: INPUT_SIZE });
    const total = fer.model.countParams();
    fer.model.dispose();
    expect(Math.floor(total / 1e5) / 10, `${total} parameters`).toBe(reported);
  });
});
