/**
 * ConvNeXtTiny, ConvNeXtSmall and ConvNeXtBase with Keras Applications' layer
 * names and structure (keras/src/applications/convnext.py, Keras 3.15), for
 * any input size of at least 32 (the strided convolutions drop odd rows and
 * columns, as in Keras).
 *
 * The model takes pixels in [0, 255] and standardises them itself with a
 * Normalization layer whose ImageNet mean and variance are constants, not
 * weights. Keras nests the stem and the downsampling layers in Sequential
 * models. Here their layers sit directly in the graph under the same names,
 * so weights match by "layer/weight" whatever the nesting in the file.
 */
import * as tf from '@tensorflow/tfjs';

import { ChannelwiseConv2D, LastAxisLayerNormalization, LayerScale, Normalization } from '../layers';
import type { BackboneBuildOptions, BackboneSpec, BuiltBackbone } from '../types';
import { apply, conv2d, type Sym } from './common';

const IMAGENET_CLASSES = 1000;

/** Keras's ConvNeXt layer normalizations all use this epsilon instead of the default 1e-3. */
const LAYER_NORM_EPSILON = 1e-6;
const LAYER_SCALE_INIT = 1e-6;

/**
 * Keras's PreStem: ImageNet channel means and variances on the [0, 255]
 * scale, written as Keras writes them so float32 rounding matches.
 */
const PRESTEM_MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255];
const PRESTEM_VARIANCE = [(0.229 * 255) ** 2, (0.224 * 255) ** 2, (0.225 * 255) ** 2];

/**
 * Name of the LayerNormalization that ends Keras's include_top=False model.
 * Keras creates it without a name, so it gets the automatic name of the
 * first LayerNormalization in a fresh Keras session.
 * NOTE: the published _notop.h5 files were not available to check that they
 * use this name too. Keras itself loads them by layer order, not by name.
 */
const FINAL_LAYER_NORM = 'layer_normalization';

export type ConvNeXtVariant = 'Tiny' | 'Small' | 'Base';

interface ConvNeXtConfig {
  /** Blocks per stage. */
  depths: readonly [number, number, number, number];
  /** Channels per stage. */
  projectionDims: readonly [number, number, number, number];
}

/** MODEL_CONFIGS in convnext.py (Keras 3.15); all three use drop_path_rate 0 and default size 224. */
const CONFIGS: Record<ConvNeXtVariant, ConvNeXtConfig> = {
  Tiny: { depths: [3, 3, 9, 3], projectionDims: [96, 192, 384, 768] },
  Small: { depths: [3, 3, 27, 3], projectionDims: [96, 192, 384, 768] },
  Base: { depths: [3, 3, 27, 3], projectionDims: [128, 256, 512, 1024] },
};

function modelName(variant: ConvNeXtVariant): string {
  return `convnext_${variant.toLowerCase()}`;
}

function layerNorm(x: Sym, name: string): Sym {
  return apply(new LastAxisLayerNormalization({ name, epsilon: LAYER_NORM_EPSILON }), x);
}

/**
 * Keras's ConvNeXtBlock with drop_path_rate 0: depthwise 7x7, layer norm,
 * pointwise expansion by 4 with exact (erf) GELU, projection, LayerScale,
 * and the residual sum. Keras applies an identity Activation in place of
 * stochastic depth. It adds the residual with the + operator, which makes an
 * operation rather than a layer, so here the sum is the Add layer `${name}_add`.
 */
function convNeXtBlock(inputs: Sym, projectionDim: number, name: string): Sym {
  let x = apply(
    new ChannelwiseConv2D({ name: `${name}_depthwise_conv`, channels: projectionDim, kernelSize: 7, padding: 'same' }),
    inputs,
  );
  x = layerNorm(x, `${name}_layernorm`);
  x = apply(tf.layers.dense({ name: `${name}_pointwise_conv_1`, units: 4 * projectionDim }), x);
  x = apply(tf.layers.activation({ name: `${name}_gelu`, activation: 'gelu' }), x);
  x = apply(tf.layers.dense({ name: `${name}_pointwise_conv_2`, units: projectionDim }), x);
  x = apply(new LayerScale({ name: `${name}_layer_scale`, initValues: LAYER_SCALE_INIT, projectionDim }), x);
  x = apply(tf.layers.activation({ name: `${name}_identity`, activation: 'linear' }), x);
  return apply(tf.layers.add({ name: `${name}_add` }), [inputs, x]);
}

export function buildConvNeXt(input: Sym, variant: ConvNeXtVariant, options: BackboneBuildOptions = {}): BuiltBackbone {
  const { depths, projectionDims } = CONFIGS[variant];
  const name = modelName(variant);

  let x = apply(new Normalization({ name: `${name}_prestem_normalization`, mean: PRESTEM_MEAN, variance: PRESTEM_VARIANCE }), input);

  for (let stage = 0; stage < 4; stage++) {
    const dim = projectionDims[stage] as number;
    if (stage === 0) {
      x = conv2d(x, { name: `${name}_stem_conv`, filters: dim, kernelSize: 4, strides: 4 });
      x = layerNorm(x, `${name}_stem_layernorm`);
    } else {
      x = layerNorm(x, `${name}_downsampling_layernorm_${stage - 1}`);
      x = conv2d(x, { name: `${name}_downsampling_conv_${stage - 1}`, filters: dim, kernelSize: 2, strides: 2 });
    }
    for (let block = 0; block < (depths[stage] as number); block++) {
      x = convNeXtBlock(x, dim, `${name}_stage_${stage}_block_${block}`);
    }
  }

  if (!options.includeTop) {
    return { features: layerNorm(x, FINAL_LAYER_NORM) };
  }
  // Keras's Head replaces the final normalization: pooling, layer norm, then the classifier.
  let top = apply(tf.layers.globalAveragePooling2d({ name: `${name}_head_gap` }), x);
  top = layerNorm(top, `${name}_head_layernorm`);
  top = apply(tf.layers.dense({ name: `${name}_head_dense`, units: IMAGENET_CLASSES, activation: 'softmax' }), top);
  return { features: x, top };
}

/** Block names from input to output: the stem, then every ConvNeXt block. */
function convNeXtBlocks(variant: ConvNeXtVariant): string[] {
  const blocks = ['stem'];
  CONFIGS[variant].depths.forEach((depth, stage) => {
    for (let block = 0; block < depth; block++) {
      blocks.push(`stage_${stage}_block_${block}`);
    }
  });
  return blocks;
}

/**
 * Maps layers to blocks. Blocks are single ConvNeXt blocks rather than the
 * four stages, because the third stage of Small and Base has 27 blocks.
 * A downsampling layer belongs to the first block of the stage it starts,
 * and the final layer normalization and the ImageNet head belong to the last block.
 */
function convNeXtBlockOf(variant: ConvNeXtVariant): (layer: string) => string | undefined {
  const name = modelName(variant);
  const { depths } = CONFIGS[variant];
  const lastBlock = `stage_3_block_${depths[3] - 1}`;
  const blockPattern = new RegExp(`^${name}_(stage_\\d_block_\\d+)_`);
  const downsamplingPattern = new RegExp(`^${name}_downsampling_(?:layernorm|conv)_(\\d)$`);

  return (layer) => {
    if (layer.startsWith(`${name}_prestem_`) || layer.startsWith(`${name}_stem_`)) {
      return 'stem';
    }
    const block = blockPattern.exec(layer);
    if (block) {
      return block[1];
    }
    const downsampling = downsamplingPattern.exec(layer);
    if (downsampling) {
      return `stage_${Number(downsampling[1]) + 1}_block_0`;
    }
    if (layer === FINAL_LAYER_NORM || layer.startsWith(`${name}_head_`)) {
      return lastBlock;
    }
    return undefined;
  };
}

const KERAS_CONVNEXT_URL = 'https://storage.googleapis.com/tensorflow/keras-applications/convnext/';

/** SHA-256 checksums from WEIGHTS_HASHES in convnext.py (Keras 3.15), with top then without. */
const KERAS_CONVNEXT_SHA256: Record<ConvNeXtVariant, [string, string]> = {
  Tiny: [
    '8ae6e78ce2933352b1ef4008e6dd2f17bc40771563877d156bc6426c7cf503ff',
    'd547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1',
  ],
  Small: [
    'ce1277d8f1ee5a0ef0e171469089c18f5233860ceaf9b168049cb9263fd7483c',
    '6fc8009faa2f00c1c1dfce59feea9b0745eb260a7dd11bee65c8e20843da6eab',
  ],
  Base: [
    '52cbb006d3dadd03f6e095a8ca1aca47aecdd75acb4bc74bce1f5c695d0086e6',
    '40a20c5548a5e9202f69735ecc06c990e6b7c9d2de39f0361e27baeb24cb7c45',
  ],
};

/** Parameters of keras.applications.ConvNeXt*(include_top=False) at 224x224 (Keras 3.15). */
const KERAS_CONVNEXT_PARAMS_NO_TOP: Record<ConvNeXtVariant, number> = {
  Tiny: 27_820_128,
  Small: 49_454_688,
  Base: 87_566_464,
};

export function convNeXtSpec(variant: ConvNeXtVariant): BackboneSpec {
  const [withTopSha256, noTopSha256] = KERAS_CONVNEXT_SHA256[variant];
  const { depths, projectionDims } = CONFIGS[variant];
  const file = modelName(variant);
  return {
    name: `ConvNeXt${variant}`,
    description: `Keras ConvNeXt${variant}: blocks ${depths.join('-')}, channels ${projectionDims.join('-')}`,
    defaultInputSize: 224,
    minInputSize: 32,
    preprocessing: 'none',
    lastConvLayer: FINAL_LAYER_NORM,
    blocks: convNeXtBlocks(variant),
    blockOf: convNeXtBlockOf(variant),
    kerasParamsNoTop: KERAS_CONVNEXT_PARAMS_NO_TOP[variant],
    weights: {
      kerasNoTop: { url: `${KERAS_CONVNEXT_URL}${file}_notop.h5`, sha256: noTopSha256 },
      kerasWithTop: { url: `${KERAS_CONVNEXT_URL}${file}.h5`, sha256: withTopSha256 },
    },
    build: (input, options) => buildConvNeXt(input, variant, options),
  };
}
