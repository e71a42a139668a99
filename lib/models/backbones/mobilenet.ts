/**
 * MobileNet (v1) and MobileNetV2 with Keras Applications' layer names and
 * structure (keras/src/applications/mobilenet.py and mobilenet_v2.py,
 * Keras 3.15), for any width multiplier and input size.
 */
import * as tf from '@tensorflow/tfjs';

import { SeededDropout } from '../layers';
import type { BackboneBuildOptions, BackboneSpec, BuiltBackbone } from '../types';
import {
  apply,
  batchNorm,
  conv2d,
  correctPad,
  depthwiseConv2d,
  makeDivisible,
  relu6,
  type Sym,
  zeroPad,
} from './common';

const IMAGENET_CLASSES = 1000;

function mobileNetConvBlock(x: Sym, filters: number, alpha: number): Sym {
  x = conv2d(x, { name: 'conv1', filters: Math.trunc(filters * alpha), kernelSize: 3, strides: 2, padding: 'same', useBias: false });
  x = batchNorm(x, 'conv1_bn');
  return relu6(x, 'conv1_relu');
}

function mobileNetDepthwiseBlock(x: Sym, filters: number, alpha: number, strides: 1 | 2, id: number): Sym {
  if (strides === 2) {
    x = zeroPad(x, `conv_pad_${id}`, [
      [0, 1],
      [0, 1],
    ]);
  }
  x = depthwiseConv2d(x, { name: `conv_dw_${id}`, kernelSize: 3, strides, padding: strides === 1 ? 'same' : 'valid', useBias: false });
  x = batchNorm(x, `conv_dw_${id}_bn`);
  x = relu6(x, `conv_dw_${id}_relu`);
  x = conv2d(x, { name: `conv_pw_${id}`, filters: Math.trunc(filters * alpha), kernelSize: 1, padding: 'same', useBias: false });
  x = batchNorm(x, `conv_pw_${id}_bn`);
  return relu6(x, `conv_pw_${id}_relu`);
}

/** Pointwise filters and stride of MobileNet v1 blocks 1-13. */
const MOBILENET_V1_BLOCKS: ReadonlyArray<[number, 1 | 2]> = [
  [64, 1],
  [128, 2],
  [128, 1],
  [256, 2],
  [256, 1],
  [512, 2],
  [512, 1],
  [512, 1],
  [512, 1],
  [512, 1],
  [512, 1],
  [1024, 2],
  [1024, 1],
];

export function buildMobileNet(input: Sym, alpha: number, options: BackboneBuildOptions = {}): BuiltBackbone {
  let x = mobileNetConvBlock(input, 32, alpha);
  MOBILENET_V1_BLOCKS.forEach(([filters, strides], i) => {
    x = mobileNetDepthwiseBlock(x, filters, alpha, strides, i + 1);
  });
  const features = x;
  if (!options.includeTop) {
    return { features };
  }
  let top = apply(tf.layers.globalAveragePooling2d({ name: 'global_average_pooling2d' }), features);
  top = apply(tf.layers.reshape({ name: 'reshape_1', targetShape: [1, 1, top.shape[1] as number] }), top);
  top = apply(new SeededDropout({ name: 'dropout', rate: 1e-3 }), top);
  top = conv2d(top, { name: 'conv_preds', filters: IMAGENET_CLASSES, kernelSize: 1, padding: 'same' });
  top = apply(tf.layers.reshape({ name: 'reshape_2', targetShape: [IMAGENET_CLASSES] }), top);
  top = apply(tf.layers.activation({ name: 'predictions', activation: 'softmax' }), top);
  return { features, top };
}

function invertedResidualBlock(x: Sym, expansion: number, stride: 1 | 2, alpha: number, filters: number, id: number): Sym {
  const inputs = x;
  const inChannels = x.shape[3] as number;
  const pointwiseFilters = makeDivisible(Math.trunc(filters * alpha), 8);
  let prefix = `block_${id}_`;
  if (id > 0) {
    x = conv2d(x, { name: `${prefix}expand`, filters: expansion * inChannels, kernelSize: 1, padding: 'same', useBias: false });
    x = batchNorm(x, `${prefix}expand_BN`);
    x = relu6(x, `${prefix}expand_relu`);
  } else {
    prefix = 'expanded_conv_';
  }
  if (stride === 2) {
    x = zeroPad(x, `${prefix}pad`, correctPad(x, 3));
  }
  x = depthwiseConv2d(x, { name: `${prefix}depthwise`, kernelSize: 3, strides: stride, padding: stride === 1 ? 'same' : 'valid', useBias: false });
  x = batchNorm(x, `${prefix}depthwise_BN`);
  x = relu6(x, `${prefix}depthwise_relu`);
  x = conv2d(x, { name: `${prefix}project`, filters: pointwiseFilters, kernelSize: 1, padding: 'same', useBias: false });
  x = batchNorm(x, `${prefix}project_BN`);
  if (inChannels === pointwiseFilters && stride === 1) {
    return apply(tf.layers.add({ name: `${prefix}add` }), [inputs, x]);
  }
  return x;
}

/** Filters, stride and expansion of MobileNetV2 blocks 0-16. */
const MOBILENET_V2_BLOCKS: ReadonlyArray<[number, 1 | 2, number]> = [
  [16, 1, 1],
  [24, 2, 6],
  [24, 1, 6],
  [32, 2, 6],
  [32, 1, 6],
  [32, 1, 6],
  [64, 2, 6],
  [64, 1, 6],
  [64, 1, 6],
  [64, 1, 6],
  [96, 1, 6],
  [96, 1, 6],
  [96, 1, 6],
  [160, 2, 6],
  [160, 1, 6],
  [160, 1, 6],
  [320, 1, 6],
];

export function buildMobileNetV2(input: Sym, alpha: number, options: BackboneBuildOptions = {}): BuiltBackbone {
  let x = conv2d(input, { name: 'Conv1', filters: makeDivisible(32 * alpha, 8), kernelSize: 3, strides: 2, padding: 'same', useBias: false });
  x = batchNorm(x, 'bn_Conv1');
  x = relu6(x, 'Conv1_relu');
  MOBILENET_V2_BLOCKS.forEach(([filters, stride, expansion], id) => {
    x = invertedResidualBlock(x, expansion, stride, alpha, filters, id);
  });
  const lastFilters = alpha > 1 ? makeDivisible(1280 * alpha, 8) : 1280;
  x = conv2d(x, { name: 'Conv_1', filters: lastFilters, kernelSize: 1, useBias: false });
  x = batchNorm(x, 'Conv_1_bn');
  const features = relu6(x, 'out_relu');
  if (!options.includeTop) {
    return { features };
  }
  let top = apply(tf.layers.globalAveragePooling2d({ name: 'global_average_pooling2d' }), features);
  top = apply(tf.layers.dense({ name: 'predictions', units: IMAGENET_CLASSES, activation: 'softmax' }), top);
  return { features, top };
}

function mobileNetV1BlockOf(layer: string): string | undefined {
  if (layer.startsWith('conv1')) {
    return 'stem';
  }
  const match = /^conv_(?:pad|dw|pw)_(\d+)/.exec(layer);
  if (match) {
    return `block_${match[1]}`;
  }
  if (['global_average_pooling2d', 'reshape_1', 'dropout', 'conv_preds', 'reshape_2', 'predictions'].includes(layer)) {
    return 'top';
  }
  return undefined;
}

function mobileNetV2BlockOf(layer: string): string | undefined {
  if (layer === 'Conv1' || layer === 'bn_Conv1' || layer === 'Conv1_relu') {
    return 'stem';
  }
  if (layer.startsWith('expanded_conv_')) {
    return 'block_0';
  }
  const match = /^block_(\d+)_/.exec(layer);
  if (match) {
    return `block_${match[1]}`;
  }
  if (layer === 'Conv_1' || layer === 'Conv_1_bn' || layer === 'out_relu') {
    return 'head_conv';
  }
  if (layer === 'global_average_pooling2d' || layer === 'predictions') {
    return 'top';
  }
  return undefined;
}

const KERAS_MOBILENET_URL = 'https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/';
const KERAS_MOBILENET_V2_URL = 'https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/';

function alphaText(alpha: number): string {
  return { 1: '1_0', 0.75: '7_5', 0.5: '5_0', 0.25: '2_5' }[alpha] ?? String(alpha);
}

export function mobileNetSpec(alpha: 0.25 | 0.5 | 0.75 | 1, tfjsFolder?: string): BackboneSpec {
  const blocks = ['stem', ...MOBILENET_V1_BLOCKS.map((_, i) => `block_${i + 1}`)];
  return {
    name: alpha === 1 ? 'MobileNet' : `MobileNet-${alpha}`,
    description: `Keras MobileNet (v1), width multiplier ${alpha}`,
    defaultInputSize: 224,
    minInputSize: 32,
    preprocessing: 'tf',
    lastConvLayer: 'conv_pw_13_relu',
    blocks,
    blockOf: mobileNetV1BlockOf,
    weights: {
      ...(tfjsFolder !== undefined ? { tfjsFolder } : {}),
      kerasNoTop: { url: `${KERAS_MOBILENET_URL}mobilenet_${alphaText(alpha)}_224_tf_no_top.h5`},
    },
    build: (input, options) => buildMobileNet(input, alpha, options),
  };
}

export function mobileNetV2Spec(alpha: 0.35 | 0.5 | 0.75 | 1 | 1.3 | 1.4, tfjsFolder?: string): BackboneSpec {
  const blocks = ['stem', ...MOBILENET_V2_BLOCKS.map((_, i) => `block_${i}`), 'head_conv'];
  return {
    name: alpha === 1 ? 'MobileNetV2' : `MobileNetV2-${alpha}`,
    description: `Keras MobileNetV2, width multiplier ${alpha}`,
    defaultInputSize: 224,
    minInputSize: 32,
    preprocessing: 'tf',
    lastConvLayer: 'out_relu',
    blocks,
    blockOf: mobileNetV2BlockOf,
    weights: {
      ...(tfjsFolder !== undefined ? { tfjsFolder } : {}),
      kerasNoTop: {
        url: `${KERAS_MOBILENET_V2_URL}mobilenet_v2_weights_tf_dim_ordering_tf_kernels_${alpha === 1 ? '1.0' : String(alpha)}_224_no_top.h5`,
      },
    },
    build: (input, options) => buildMobileNetV2(input, alpha, options),
  };
}
