/**
 * Layer helpers that give backbone code Keras Applications' layer names and
 * defaults, so that weights exported by Keras load by name.
 */
import * as tf from '@tensorflow/tfjs';

import { FastReLU, FrozenBatchNormalization } from '../layers';

export type Sym = tf.SymbolicTensor;

export function apply(layer: tf.layers.Layer, x: Sym | Sym[]): Sym {
  return layer.apply(x) as Sym;
}

export interface ConvOptions {
  name: string;
  filters: number;
  kernelSize: number | [number, number];
  strides?: number;
  padding?: 'same' | 'valid';
  useBias?: boolean;
  activation?: 'linear' | 'relu' | 'softmax' | 'swish' | 'sigmoid';
  dilationRate?: number;
}

export function conv2d(x: Sym, options: ConvOptions): Sym {
  return apply(
    tf.layers.conv2d({
      name: options.name,
      filters: options.filters,
      kernelSize: options.kernelSize,
      strides: options.strides ?? 1,
      padding: options.padding ?? 'valid',
      useBias: options.useBias ?? true,
      activation: options.activation ?? 'linear',
      dilationRate: options.dilationRate ?? 1,
    }),
    x,
  );
}

export interface DepthwiseOptions {
  name: string;
  kernelSize: number;
  strides?: number;
  padding?: 'same' | 'valid';
  useBias?: boolean;
  depthMultiplier?: number;
}

export function depthwiseConv2d(x: Sym, options: DepthwiseOptions): Sym {
  return apply(
    tf.layers.depthwiseConv2d({
      name: options.name,
      kernelSize: options.kernelSize,
      strides: options.strides ?? 1,
      padding: options.padding ?? 'valid',
      useBias: options.useBias ?? true,
      depthMultiplier: options.depthMultiplier ?? 1,
    }),
    x,
  );
}

/** Keras BatchNormalization in inference mode (see FrozenBatchNormalization). */
export function batchNorm(x: Sym, name: string, epsilon = 1e-3): Sym {
  return apply(new FrozenBatchNormalization({ name, epsilon }), x);
}

export function relu6(x: Sym, name: string): Sym {
  return apply(new FastReLU({ name, maxValue: 6 }), x);
}

export function relu(x: Sym, name: string): Sym {
  return apply(new FastReLU({ name }), x);
}

/** Zero padding of ((top, bottom), (left, right)) rows and columns. */
export function zeroPad(x: Sym, name: string, padding: [[number, number], [number, number]]): Sym {
  return apply(tf.layers.zeroPadding2d({ name, padding }), x);
}

export function spatialSize(x: Sym): [number, number] {
  const [, h, w] = x.shape;
  if (h == null || w == null) {
    throw new Error(`Backbones need a fixed input size, got feature shape ${JSON.stringify(x.shape)}.`);
  }
  return [h, w];
}

/**
 * Keras's imagenet_utils.correct_pad: the asymmetric padding that makes a
 * stride-2 'valid' convolution match TensorFlow's 'same' for even sizes.
 */
export function correctPad(x: Sym, kernelSize: number): [[number, number], [number, number]] {
  const [h, w] = spatialSize(x);
  const adjust = [1 - (h % 2), 1 - (w % 2)] as const;
  const correct = Math.floor(kernelSize / 2);
  return [
    [correct - adjust[0], correct],
    [correct - adjust[1], correct],
  ];
}

/** Keras's _make_divisible: rounds channel counts to a multiple of `divisor`. */
export function makeDivisible(value: number, divisor: number, minValue?: number): number {
  const min = minValue ?? divisor;
  let result = Math.max(min, Math.floor((value + divisor / 2) / divisor) * divisor);
  if (result < 0.9 * value) {
    result += divisor;
  }
  return result;
}
