/**
 * EfficientNetB0-B7 with Keras Applications' layer names and structure
 * (keras/src/applications/efficientnet.py, Keras 3.15), for any input size
 * of at least 32.
 *
 * The model takes pixels in [0, 255] and normalises them itself, in the
 * layers Keras builds for weights="imagenet": Rescaling(1/255), an adaptable
 * Normalization whose mean and variance come from the weight file, and a
 * per-channel Rescaling by 1/sqrt(stddev). Keras leaves out that last layer
 * for weights=None; this builder always includes it, because the backbone
 * exists to load the ImageNet weights.
 */
import * as tf from '@tensorflow/tfjs';

import { ChannelRescaling, Normalization, SeededDropout } from '../layers';
import type { BackboneBuildOptions, BackboneSpec, BuiltBackbone } from '../types';
import { apply, batchNorm, conv2d, correctPad, depthwiseConv2d, makeDivisible, type Sym, zeroPad } from './common';

const IMAGENET_CLASSES = 1000;

/** The channel means and standard deviations of ImageNet on the [0, 1] scale. */
const IMAGENET_MEAN_RGB = [0.485, 0.456, 0.406];
const IMAGENET_STDDEV_RGB = [0.229, 0.224, 0.225];

/**
 * Keras's published EfficientNet files store the standard deviations, not
 * their squares, as the Normalization variance, which TensorFlow 2.5's
 * efficientnet.py set to [0.229, 0.224, 0.225]. Normalization divides by
 * sqrt(variance) and the following Rescaling by sqrt(stddev) again, so the
 * two together divide by stddev. The Normalization weights start at these
 * values, which the ImageNet weights then overwrite, so a randomly
 * initialised model also receives standardised inputs.
 */
const IMAGENET_NORMALIZATION = { initialMean: IMAGENET_MEAN_RGB, initialVariance: IMAGENET_STDDEV_RGB };

export type EfficientNetVariant = 'B0' | 'B1' | 'B2' | 'B3' | 'B4' | 'B5' | 'B6' | 'B7';

interface ScalingParams {
  width: number;
  depth: number;
  defaultSize: number;
  /** Dropout rate before the ImageNet classifier. */
  dropout: number;
}

/** Width and depth coefficients, default resolution and top dropout of each variant (efficientnet.py). */
const SCALING: Record<EfficientNetVariant, ScalingParams> = {
  B0: { width: 1.0, depth: 1.0, defaultSize: 224, dropout: 0.2 },
  B1: { width: 1.0, depth: 1.1, defaultSize: 240, dropout: 0.2 },
  B2: { width: 1.1, depth: 1.2, defaultSize: 260, dropout: 0.3 },
  B3: { width: 1.2, depth: 1.4, defaultSize: 300, dropout: 0.3 },
  B4: { width: 1.4, depth: 1.8, defaultSize: 380, dropout: 0.4 },
  B5: { width: 1.6, depth: 2.2, defaultSize: 456, dropout: 0.4 },
  B6: { width: 1.8, depth: 2.6, defaultSize: 528, dropout: 0.5 },
  B7: { width: 2.0, depth: 3.1, defaultSize: 600, dropout: 0.5 },
};

interface StageArgs {
  kernelSize: 3 | 5;
  repeats: number;
  filtersIn: number;
  filtersOut: number;
  expandRatio: number;
  strides: 1 | 2;
}

/** Keras's DEFAULT_BLOCKS_ARGS: the seven MBConv stages of B0; all use se_ratio 0.25 and id_skip. */
const DEFAULT_STAGES: readonly StageArgs[] = [
  { kernelSize: 3, repeats: 1, filtersIn: 32, filtersOut: 16, expandRatio: 1, strides: 1 },
  { kernelSize: 3, repeats: 2, filtersIn: 16, filtersOut: 24, expandRatio: 6, strides: 2 },
  { kernelSize: 5, repeats: 2, filtersIn: 24, filtersOut: 40, expandRatio: 6, strides: 2 },
  { kernelSize: 3, repeats: 3, filtersIn: 40, filtersOut: 80, expandRatio: 6, strides: 2 },
  { kernelSize: 5, repeats: 3, filtersIn: 80, filtersOut: 112, expandRatio: 6, strides: 1 },
  { kernelSize: 5, repeats: 4, filtersIn: 112, filtersOut: 192, expandRatio: 6, strides: 2 },
  { kernelSize: 3, repeats: 1, filtersIn: 192, filtersOut: 320, expandRatio: 6, strides: 1 },
];

const SE_RATIO = 0.25;
/** Keras's drop_connect_rate: the stochastic-depth rate grows linearly to this over the blocks. */
const DROP_CONNECT_RATE = 0.2;
const DEPTH_DIVISOR = 8;

/** Keras's round_filters: scales channels by the width coefficient, rounded to a multiple of 8. */
function roundFilters(filters: number, width: number): number {
  return makeDivisible(filters * width, DEPTH_DIVISOR);
}

/** Keras's round_repeats: scales a stage's block count by the depth coefficient, rounded up. */
function roundRepeats(repeats: number, depth: number): number {
  return Math.ceil(depth * repeats);
}

function swish(x: Sym, name: string): Sym {
  return apply(tf.layers.activation({ name, activation: 'swish' }), x);
}

interface BlockArgs {
  name: string;
  filtersIn: number;
  filtersOut: number;
  kernelSize: number;
  strides: 1 | 2;
  expandRatio: number;
  dropRate: number;
}

/** Keras's block(): MBConv with expansion, depthwise conv, squeeze-and-excitation and projection. */
function mbConvBlock(inputs: Sym, args: BlockArgs): Sym {
  const { name, filtersIn, filtersOut, kernelSize, strides, expandRatio, dropRate } = args;
  const filters = filtersIn * expandRatio;

  let x = inputs;
  if (expandRatio !== 1) {
    x = conv2d(x, { name: `${name}expand_conv`, filters, kernelSize: 1, padding: 'same', useBias: false });
    x = batchNorm(x, `${name}expand_bn`);
    x = swish(x, `${name}expand_activation`);
  }

  if (strides === 2) {
    x = zeroPad(x, `${name}dwconv_pad`, correctPad(x, kernelSize));
  }
  x = depthwiseConv2d(x, { name: `${name}dwconv`, kernelSize, strides, padding: strides === 2 ? 'valid' : 'same', useBias: false });
  x = batchNorm(x, `${name}bn`);
  x = swish(x, `${name}activation`);

  const filtersSe = Math.max(1, Math.trunc(filtersIn * SE_RATIO));
  let se = apply(tf.layers.globalAveragePooling2d({ name: `${name}se_squeeze` }), x);
  se = apply(tf.layers.reshape({ name: `${name}se_reshape`, targetShape: [1, 1, filters] }), se);
  se = conv2d(se, { name: `${name}se_reduce`, filters: filtersSe, kernelSize: 1, padding: 'same', activation: 'swish' });
  se = conv2d(se, { name: `${name}se_expand`, filters, kernelSize: 1, padding: 'same', activation: 'sigmoid' });
  x = apply(tf.layers.multiply({ name: `${name}se_excite` }), [x, se]);

  x = conv2d(x, { name: `${name}project_conv`, filters: filtersOut, kernelSize: 1, padding: 'same', useBias: false });
  x = batchNorm(x, `${name}project_bn`);
  if (strides === 1 && filtersIn === filtersOut) {
    if (dropRate > 0) {
      // Stochastic depth: Keras drops the whole residual branch per sample.
      x = apply(new SeededDropout({ name: `${name}drop`, rate: dropRate, noiseShape: [null, 1, 1, 1] }), x);
    }
    x = apply(tf.layers.add({ name: `${name}add` }), [x, inputs]);
  }
  return x;
}

/** Blocks per stage after depth scaling. */
function stageRepeats(variant: EfficientNetVariant): number[] {
  return DEFAULT_STAGES.map((stage) => roundRepeats(stage.repeats, SCALING[variant].depth));
}

export function buildEfficientNet(input: Sym, variant: EfficientNetVariant, options: BackboneBuildOptions = {}): BuiltBackbone {
  const { width } = SCALING[variant];

  let x = apply(new ChannelRescaling({ name: 'rescaling', scale: 1 / 255 }), input);
  x = apply(new Normalization({ name: 'normalization', ...IMAGENET_NORMALIZATION }), x);
  x = apply(new ChannelRescaling({ name: 'rescaling_1', scale: IMAGENET_STDDEV_RGB.map((s) => 1 / Math.sqrt(s)) }), x);

  x = zeroPad(x, 'stem_conv_pad', correctPad(x, 3));
  x = conv2d(x, { name: 'stem_conv', filters: roundFilters(32, width), kernelSize: 3, strides: 2, padding: 'valid', useBias: false });
  x = batchNorm(x, 'stem_bn');
  x = swish(x, 'stem_activation');

  const repeats = stageRepeats(variant);
  const totalBlocks = repeats.reduce((sum, r) => sum + r, 0);
  let b = 0;
  DEFAULT_STAGES.forEach((stage, i) => {
    const filtersOut = roundFilters(stage.filtersOut, width);
    for (let j = 0; j < (repeats[i] as number); j++) {
      x = mbConvBlock(x, {
        name: `block${i + 1}${String.fromCharCode(97 + j)}_`,
        filtersIn: j === 0 ? roundFilters(stage.filtersIn, width) : filtersOut,
        filtersOut,
        kernelSize: stage.kernelSize,
        strides: j === 0 ? stage.strides : 1,
        expandRatio: stage.expandRatio,
        dropRate: (DROP_CONNECT_RATE * b) / totalBlocks,
      });
      b++;
    }
  });

  x = conv2d(x, { name: 'top_conv', filters: roundFilters(1280, width), kernelSize: 1, padding: 'same', useBias: false });
  x = batchNorm(x, 'top_bn');
  const features = swish(x, 'top_activation');
  if (!options.includeTop) {
    return { features };
  }
  let top = apply(tf.layers.globalAveragePooling2d({ name: 'avg_pool' }), features);
  top = apply(new SeededDropout({ name: 'top_dropout', rate: SCALING[variant].dropout }), top);
  top = apply(tf.layers.dense({ name: 'predictions', units: IMAGENET_CLASSES, activation: 'softmax' }), top);
  return { features, top };
}

const EFFICIENTNET_BLOCKS = ['stem', ...DEFAULT_STAGES.map((_, i) => `block${i + 1}`), 'top'];

/**
 * Maps layers to blocks: the input scaling and stem, the seven MBConv stages
 * (block1 to block7, each with all its repeats), and the 1x1 top convolution
 * with the ImageNet classifier.
 */
function efficientNetBlockOf(layer: string): string | undefined {
  if (layer === 'rescaling' || layer === 'normalization' || layer === 'rescaling_1' || layer.startsWith('stem_')) {
    return 'stem';
  }
  const match = /^block([1-7])[a-z]_/.exec(layer);
  if (match) {
    return `block${match[1]}`;
  }
  if (layer.startsWith('top_') || layer === 'avg_pool' || layer === 'predictions') {
    return 'top';
  }
  return undefined;
}

const KERAS_EFFICIENTNET_URL = 'https://storage.googleapis.com/keras-applications/';

/** MD5 checksums from WEIGHTS_HASHES in efficientnet.py (Keras 3.15), with top then without. */
const KERAS_EFFICIENTNET_MD5: Record<EfficientNetVariant, [string, string]> = {
  B0: ['902e53a9f72be733fc0bcb005b3ebbac', '50bc09e76180e00e4465e1a485ddc09d'],
  B1: ['1d254153d4ab51201f1646940f018540', '74c4e6b3e1f6a1eea24c589628592432'],
  B2: ['b15cce36ff4dcbd00b6dd88e7857a6ad', '111f8e2ac8aa800a7a99e3239f7bfb39'],
  B3: ['ffd1fdc53d0ce67064dc6a9c7960ede0', 'af6d107764bb5b1abb91932881670226'],
  B4: ['18c95ad55216b8f92d7e70b3a046e2fc', 'ebc24e6d6c33eaebbd558eafbeedf1ba'],
  B5: ['ace28f2a6363774853a83a0b21b9421a', '38879255a25d3c92d5e44e04ae6cec6f'],
  B6: ['165f6e37dce68623721b423839de8be5', '9ecce42647a20130c1f39a5d4cb75743'],
  B7: ['8c03f828fec3ef71311cd463b6759d99', 'cbcfe4450ddf6f3ad90b1b398090fe4a'],
};

/**
 * Parameters of keras.applications.EfficientNetB*(include_top=False) at the
 * default size (Keras 3.15), including the Normalization's mean, variance and count.
 */
const KERAS_EFFICIENTNET_PARAMS_NO_TOP: Record<EfficientNetVariant, number> = {
  B0: 4_049_571,
  B1: 6_575_239,
  B2: 7_768_569,
  B3: 10_783_535,
  B4: 17_673_823,
  B5: 28_513_527,
  B6: 40_960_143,
  B7: 64_097_687,
};

export function efficientNetSpec(variant: EfficientNetVariant): BackboneSpec {
  const [withTopMd5, noTopMd5] = KERAS_EFFICIENTNET_MD5[variant];
  const { width, depth, defaultSize } = SCALING[variant];
  const file = `efficientnet${variant.toLowerCase()}`;
  return {
    name: `EfficientNet${variant}`,
    description: `Keras EfficientNet${variant}: MBConv blocks ${stageRepeats(variant).join('-')}, width x${width}, depth x${depth}`,
    defaultInputSize: defaultSize,
    minInputSize: 32,
    preprocessing: 'none',
    lastConvLayer: 'top_activation',
    blocks: EFFICIENTNET_BLOCKS,
    blockOf: efficientNetBlockOf,
    kerasParamsNoTop: KERAS_EFFICIENTNET_PARAMS_NO_TOP[variant],
    weights: {
      kerasNoTop: { url: `${KERAS_EFFICIENTNET_URL}${file}_notop.h5`, md5: noTopMd5 },
      kerasWithTop: { url: `${KERAS_EFFICIENTNET_URL}${file}.h5`, md5: withTopMd5 },
    },
    build: (input, options) => buildEfficientNet(input, variant, options),
  };
}
