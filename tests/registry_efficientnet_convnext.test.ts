/**
 * Checks the EfficientNet and ConvNeXt entries of the registry: the study's
 * configurations and their parameter totals, and how the backbones' layers
 * map to blocks for fine-tuning. Numerical agreement with Keras is checked
 * by the fidelity test.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import { registerBuiltins } from '../lib/models/catalog';
import { createModel, setTrainableBlocks, type FerModel } from '../lib/models/factory';
import { getBackbone, getConfiguration } from '../lib/models/registry';

const EFFICIENTNETS = ['B0', 'B1', 'B2', 'B3', 'B4', 'B5', 'B6', 'B7'].map((v) => `EfficientNet${v}`);
const CONVNEXTS = ['Tiny', 'Small', 'Base'].map((v) => `ConvNeXt${v}`);

/** Channels of each backbone's feature map: round_filters(1280) for EfficientNet, the last stage for ConvNeXt. */
const FEATURE_CHANNELS: Record<string, number> = {
  EfficientNetB2: 1408,
  EfficientNetB3: 1536,
  EfficientNetB4: 1792,
  EfficientNetB5: 2048,
  ConvNeXtBase: 1024,
};

/**
 * Parameter totals the study reports, in millions. They equal Keras's exact
 * totals cut (not rounded) to one decimal: EfficientNetB2 with [512] has
 * 8,493,568 parameters and is reported as 8.4M.
 */
const STUDY_TOTALS: Array<{ name: string; backbone: string; dense: number[]; reportedMillions: number; batchSize: number }> = [
  { name: 'EfficientNetB2', backbone: 'EfficientNetB2', dense: [512], reportedMillions: 8.4, batchSize: 32 },
  { name: 'EfficientNetB5', backbone: 'EfficientNetB5', dense: [512], reportedMillions: 29.5, batchSize: 128 },
  { name: 'EfficientNetB2 Modified', backbone: 'EfficientNetB2', dense: [1024, 1024, 512], reportedMillions: 10.7, batchSize: 32 },
  { name: 'EfficientNetB3 Modified', backbone: 'EfficientNetB3', dense: [1024, 512, 256], reportedMillions: 13, batchSize: 32 },
  { name: 'ConvNeXtBase', backbone: 'ConvNeXtBase', dense: [512], reportedMillions: 88, batchSize: 32 },
];

const CLASSES = 7;

/** Parameters of the head: dense ReLU layers, then the 7-way softmax (pooling and dropout have none). */
function headParams(channels: number, dense: number[]): number {
  let total = 0;
  let inputs = channels;
  for (const units of [...dense, CLASSES]) {
    total += inputs * units + units;
    inputs = units;
  }
  return total;
}

let built: FerModel | undefined;

/** Builds a model on `backbone` with the study's head at 64x64, which keeps the build fast. */
async function smallModel(backbone: string): Promise<FerModel> {
  const config = { ...getConfiguration('ConvNeXtBase'), name: `${backbone} test`, backbone };
  return createModel(config, { weights: 'random', inputSize: 64 });
}

beforeAll(async () => {
  await initBackend('node');
  registerBuiltins();
});

afterEach(() => {
  built?.model.dispose();
  built = undefined;
});

describe('EfficientNet and ConvNeXt registry', () => {
  it('registers every backbone', () => {
    for (const name of [...EFFICIENTNETS, ...CONVNEXTS]) {
      const spec = getBackbone(name);
      expect(spec.name).toBe(name);
      expect(spec.preprocessing).toBe('none');
      expect(spec.kerasParamsNoTop).toBeGreaterThan(0);
      expect(spec.weights.kerasNoTop?.url).toMatch(/_notop\.h5$/);
    }
  });

  it('publishes MD5 for EfficientNet, SHA-256 for ConvNeXt', () => {
    for (const name of EFFICIENTNETS) {
      const { kerasNoTop, kerasWithTop } = getBackbone(name).weights;
      expect(kerasNoTop?.md5).toMatch(/^[0-9a-f]{32}$/);
      expect(kerasWithTop?.md5).toMatch(/^[0-9a-f]{32}$/);
      expect(kerasNoTop?.url).toBe(`https://storage.googleapis.com/keras-applications/${name.toLowerCase()}_notop.h5`);
    }
    for (const name of CONVNEXTS) {
      const { kerasNoTop, kerasWithTop } = getBackbone(name).weights;
      expect(kerasNoTop?.sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(kerasWithTop?.sha256).toMatch(/^[0-9a-f]{64}$/);
      const file = name.replace('ConvNeXt', 'convnext_').toLowerCase();
      expect(kerasWithTop?.url).toBe(`https://storage.googleapis.com/tensorflow/keras-applications/convnext/${file}.h5`);
    }
  });

  it.each(STUDY_TOTALS)('$name matches the study', ({ name, backbone, dense, batchSize }) => {
    const config = getConfiguration(name);
    expect(config.backbone).toBe(backbone);
    expect(config.dense).toEqual(dense);
    expect(config.inputSize).toBe(224);
    expect(config.batchSize).toBe(batchSize);
    expect(config.dropout).toBe(0.5);
  });

  it.each(STUDY_TOTALS)('$name total parameters', async ({ name, backbone, dense, reportedMillions }) => {
    built = await createModel(name, { weights: 'random' });
    const total = built.model.countParams();
    const spec = getBackbone(backbone);
    expect(total).toBe((spec.kerasParamsNoTop as number) + headParams(FEATURE_CHANNELS[backbone] as number, dense));
    // Cut to 0.1M in integer units of 100,000, which avoids binary rounding of 8.4 and the like.
    expect(Math.floor(total / 100_000)).toBe(Math.round(reportedMillions * 10));
  });
});

describe('EfficientNet and ConvNeXt blocks', () => {
  it.each(['EfficientNetB0', 'ConvNeXtTiny'])('%s maps every layer to a block', async (name) => {
    built = await smallModel(name);
    const spec = built.backbone;
    const unmapped = built.backboneLayers.filter((layer) => spec.blockOf(layer) === undefined);
    expect(unmapped).toEqual([]);
    const used = new Set(built.backboneLayers.map((layer) => spec.blockOf(layer)));
    expect([...used].sort()).toEqual([...spec.blocks].sort());
  });

  it.each(['EfficientNetB0', 'ConvNeXtTiny'])('%s features come from lastConvLayer', async (name) => {
    built = await smallModel(name);
    const layer = built.model.getLayer(built.backbone.lastConvLayer);
    const pool = built.model.getLayer('head_pool');
    expect(pool.inboundNodes[0]?.inboundLayers[0]?.name).toBe(layer.name);
  });

  it('EfficientNetB0 blocks are stages', () => {
    expect(getBackbone('EfficientNetB0').blocks).toEqual(['stem', 'block1', 'block2', 'block3', 'block4', 'block5', 'block6', 'block7', 'top']);
    const blockOf = getBackbone('EfficientNetB7').blockOf;
    expect(blockOf('normalization')).toBe('stem');
    expect(blockOf('block5j_se_excite')).toBe('block5');
    expect(blockOf('top_activation')).toBe('top');
  });

  it('ConvNeXtBase blocks are ConvNeXt blocks', () => {
    const spec = getBackbone('ConvNeXtBase');
    expect(spec.blocks).toHaveLength(1 + 3 + 3 + 27 + 3);
    expect(spec.blockOf('convnext_base_stage_2_block_26_layer_scale')).toBe('stage_2_block_26');
    expect(spec.blockOf('convnext_base_downsampling_conv_2')).toBe('stage_3_block_0');
    expect(spec.blockOf('layer_normalization')).toBe('stage_3_block_2');
    expect(spec.blockOf('convnext_base_prestem_normalization')).toBe('stem');
  });

  it('unfreezing the top block trains only it', async () => {
    built = await smallModel('EfficientNetB0');
    const trainableLayers = setTrainableBlocks(built, 1);
    expect(trainableLayers).toBe(1);
    const trainable = built.model.trainableWeights.map((w) => w.originalName);
    expect(trainable).toContain('top_conv/kernel');
    expect(trainable.some((name) => name.startsWith('block7a_'))).toBe(false);
    // The input normalization statistics never train, whatever is unfrozen.
    setTrainableBlocks(built, 'all');
    const all = built.model.trainableWeights.map((w) => w.originalName);
    expect(all.filter((name) => name.startsWith('normalization/'))).toEqual([]);
    expect(all).toContain('block1a_dwconv/depthwise_kernel');
  });

  it('EfficientNet normalization starts at ImageNet values', async () => {
    built = await smallModel('EfficientNetB0');
    const [mean, variance, count] = built.model.getLayer('normalization').getWeights();
    expect(Array.from(mean?.dataSync() ?? [])).toEqual(Array.from(Float32Array.from([0.485, 0.456, 0.406])));
    expect(Array.from(variance?.dataSync() ?? [])).toEqual(Array.from(Float32Array.from([0.229, 0.224, 0.225])));
    expect(count?.dtype).toBe('int32');
    expect(count?.shape).toEqual([]);
  });
});
