/**
 * A training step as one TensorFlow graph: forward pass in training mode,
 * categorical cross-entropy, gradients and the Adam update, run by
 * TensorFlow's graph executor through tfjs-node's SavedModel session instead
 * of one eager kernel call at a time. The trainer builds it for the whole
 * model in phase 2 and for the head on pooled features in phase 1.
 *
 * tfjs-node executes each operation eagerly, which costs JavaScript and
 * binding time per kernel and gives TensorFlow no chance to fuse or schedule
 * operations. Keras runs the same step as a graph (tf.function). This module
 * writes that graph from the tfjs layers model. Frozen weights become
 * constants, with frozen batch norm folded into the preceding convolution as
 * lib/models/fold.ts does on tfjs. Trained weights and their Adam moments
 * become resource variables. The gradients come from TensorFlow's gradient
 * kernels (lib/graph/builder.ts). The graph is saved as a SavedModel
 * in a temporary folder and loaded once; its signatures share one session:
 *
 * - "load" assigns the trained weights and the Adam moments,
 * - "train" runs one step and returns the mean loss and the predicted classes,
 * - "state" returns the weights and moments, to write back into the tfjs
 *   model before validation and checkpoints.
 *
 * The arithmetic follows the eager trainer: dropout multiplies by the masks
 * that SeededDropout would draw (fed in), the loss clips probabilities to
 * [1e-7, 1 - 1e-7], and Adam's update equals tf.train.adam's (TensorFlow's
 * ResourceApplyAdam with epsilon scaled by sqrt(1 - beta2^t)). Results agree
 * with the eager step to float rounding (tests/graph.test.ts).
 *
 * Covered layer classes: GRAPH_LAYER_CLASSES, which include those of every
 * backbone in the registry. A model with any other class trains eagerly.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import * as tf from '@tensorflow/tfjs';

import { FrozenBatchNormalization } from '../models/layers';
import { modelNode } from '../onnx/export';
import { TfGraph, type Sym } from './builder';
import { DT, savedModelBytes, tensorProto, type Attr, type Signature, type TensorInfo } from './proto';

/** Probabilities are clipped to [EPSILON, 1 - EPSILON] before the log, as in Keras and the eager trainer. */
const EPSILON = 1e-7;

export class GraphUnsupportedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GraphUnsupportedError';
  }
}

/** A dropout layer whose mask the caller feeds at each step. */
export interface GraphMask {
  layerName: string;
  rate: number;
  /** Noise shape without the batch dimension. */
  shape: number[];
}

interface Converted {
  x: Sym;
}

interface Context {
  g: TfGraph;
  /** Trained variables by tfjs variable name, with their graph reads. */
  trained: Map<string, Sym>;
  /** Conv layer name -> the frozen batch norm folded into it. */
  folds: Map<string, FrozenBatchNormalization>;
  folded: Set<string>;
  masks: Array<GraphMask & { input: Sym }>;
}

const T: Attr = { type: DT.float };

function weightOf(layer: tf.layers.Layer, short: string): tf.LayerVariable | undefined {
  return layer.weights.find((w) => (w.originalName.split('/').pop() as string).replace(/_\d+$/, '') === short);
}

/** Returns a layer weight as a graph tensor: the trained variable's read, or a constant. */
function weightSym(ctx: Context, layer: tf.layers.Layer, short: string): { sym: Sym; values: Float32Array } | undefined {
  const weight = weightOf(layer, short);
  if (weight === undefined) {
    return undefined;
  }
  const variable = weight.read() as tf.Variable;
  const read = ctx.trained.get(variable.name);
  const values = variable.dataSync() as Float32Array;
  if (read !== undefined) {
    return { sym: read, values };
  }
  return { sym: ctx.g.constant(`${layer.name}/${short}`, Float32Array.from(values), [...variable.shape]), values };
}

function frozenAffine(bn: FrozenBatchNormalization): { scale: Float32Array; offset: Float32Array } {
  const [gamma, beta, mean, variance] = bn.weights.map((w) => w.read().dataSync() as Float32Array) as [Float32Array, Float32Array, Float32Array, Float32Array];
  const scale = gamma.map((g, i) => g / Math.sqrt((variance[i] as number) + bn.epsilon));
  const offset = beta.map((b, i) => b - (mean[i] as number) * (scale[i] as number));
  return { scale: Float32Array.from(scale), offset: Float32Array.from(offset) };
}

function pair(value: unknown): [number, number] {
  return Array.isArray(value) ? [value[0] as number, value[1] as number] : [value as number, value as number];
}

function activationName(config: tf.serialization.ConfigDict): string {
  const activation = config['activation'];
  if (activation === undefined || activation === null) {
    return 'linear';
  }
  return typeof activation === 'string' ? activation : String((activation as { className?: string }).className ?? activation);
}

/**
 * Computes the exact gelu of tfjs-layers 4.22, 0.5 * x * (1 + erf(x / sqrt(2))),
 * with its derivative 0.5 * (1 + erf(x / sqrt(2))) + x * exp(-x^2 / 2) / sqrt(2 pi).
 */
function gelu(g: TfGraph, base: string, input: Sym): Sym {
  const x = TfGraph.plain(input);
  const scalar = (name: string, value: number) => g.constant(`${base}/${name}`, [value], []);
  const erf = g.op('Erf', `${base}/erf`, [g.binary('Mul', `${base}/scaled`, x, scalar('rsqrt2', Math.SQRT1_2))], { T }, x.shape);
  const cdf = g.binary('Mul', `${base}/cdf`, g.binary('AddV2', `${base}/one_plus`, erf, scalar('one', 1)), scalar('half', 0.5));
  const y = g.binary('Mul', base, x, cdf);
  return g.composite([input], y, (dy) => {
    const square = g.binary('Mul', `${base}/grad_square`, x, x);
    const density = g.unary('Exp', `${base}/grad_exp`, g.binary('Mul', `${base}/grad_exponent`, square, scalar('minus_half', -0.5)));
    const slope = g.binary('AddV2', `${base}/grad_slope`, cdf, g.binary('Mul', `${base}/grad_tail`, x, g.binary('Mul', `${base}/grad_density`, density, scalar('inv_sqrt_2pi', 1 / Math.sqrt(2 * Math.PI)))));
    return [g.binary('Mul', `${base}/grad`, dy, slope)];
  });
}

/**
 * Layer normalization over the last axis as LastAxisLayerNormalization
 * computes it, with the same closed-form gradient: x^ = (x - mean) * r,
 * r = 1 / sqrt(var + eps), s = dy * gamma, dx = r * (s - mean(s) - x^ *
 * mean(s * x^)), dgamma = sum(dy * x^) and dbeta = sum(dy) over all axes
 * but the last.
 */
function layerNormalization(ctx: Context, layer: tf.layers.Layer, input: Sym): Sym {
  const g = ctx.g;
  const config = layer.getConfig();
  const axis = config['axis'];
  const rank = input.shape.length;
  if (!(axis === -1 || axis === rank - 1 || (Array.isArray(axis) && axis.length === 1 && (axis[0] === -1 || axis[0] === rank - 1)))) {
    throw new GraphUnsupportedError(`layer normalization "${layer.name}" normalizes over axes ${JSON.stringify(axis)}, not the last one`);
  }
  const gamma = weightSym(ctx, layer, 'gamma');
  const beta = weightSym(ctx, layer, 'beta');
  if (gamma === undefined || beta === undefined) {
    throw new GraphUnsupportedError(`layer normalization "${layer.name}" has no gamma or beta`);
  }

  const name = layer.name;
  const last = rank - 1;
  const x = TfGraph.plain(input);
  const centered = g.binary('Sub', `${name}/centered`, x, g.mean(x, [last]));
  const variance = g.mean(g.binary('Mul', `${name}/squared`, centered, centered), [last]);
  const inverseStd = g.unary('Rsqrt', `${name}/inverse_std`, g.binary('AddV2', `${name}/variance_eps`, variance, g.constant(`${name}/epsilon`, [Number(config['epsilon'] ?? 1e-3)], [])));
  const normalized = g.binary('Mul', `${name}/normalized`, centered, inverseStd);
  const scale = TfGraph.plain(gamma.sym);
  const y = g.binary('AddV2', name, g.binary('Mul', `${name}/scaled`, normalized, scale), TfGraph.plain(beta.sym));
  const reduceAxes = Array.from({ length: last }, (_, i) => i);

  return g.composite([input, gamma.sym, beta.sym], y, (dy) => {
    const scaled = g.binary('Mul', `${name}/grad_scaled`, dy, scale);
    const projection = g.binary('Mul', `${name}/grad_projection`, normalized, g.mean(g.binary('Mul', `${name}/grad_dot`, scaled, normalized), [last]));
    const centeredGrad = g.binary('Sub', `${name}/grad_centered`, g.binary('Sub', `${name}/grad_mean_free`, scaled, g.mean(scaled, [last])), projection);
    return [
      input.grad ? g.binary('Mul', `${name}/grad_input`, centeredGrad, inverseStd) : undefined,
      gamma.sym.grad ? g.sum(g.binary('Mul', `${name}/grad_gamma`, dy, normalized), reduceAxes, false) : undefined,
      beta.sym.grad ? g.sum(dy, reduceAxes, false) : undefined,
    ];
  });
}

function activate(ctx: Context, layer: tf.layers.Layer, x: Sym, activation: string): Sym {
  const g = ctx.g;
  const base = `${layer.name}/${activation}`;
  switch (activation) {
    case 'linear':
      return x;
    case 'relu': {
      const y: Sym = g.op('Relu', base, [x], { T }, x.shape, (dy) => [g.op('ReluGrad', `${base}/grad`, [dy, y], { T }, x.shape)]);
      return y;
    }
    case 'relu6': {
      const y: Sym = g.op('Relu6', base, [x], { T }, x.shape, (dy) => [g.op('Relu6Grad', `${base}/grad`, [dy, y], { T }, x.shape)]);
      return y;
    }
    case 'sigmoid': {
      const y: Sym = g.op('Sigmoid', base, [x], { T }, x.shape, (dy) => [g.op('SigmoidGrad', `${base}/grad`, [y, dy], { T }, x.shape)]);
      return y;
    }
    case 'swish':
      return g.binary('Mul', base, x, activate(ctx, { name: `${layer.name}/swish` } as tf.layers.Layer, x, 'sigmoid'));
    case 'gelu':
      return gelu(ctx.g, base, x);
    case 'softmax': {
      const y: Sym = g.op('Softmax', base, [x], { T }, x.shape, (dy) => {
        const dot = g.sum(g.binary('Mul', `${base}/grad_dot`, dy, y), [x.shape.length - 1], true);
        return [g.binary('Mul', `${base}/grad`, g.binary('Sub', `${base}/grad_centred`, dy, dot), y)];
      });
      return y;
    }
    default:
      throw new GraphUnsupportedError(`layer "${layer.name}" uses activation "${activation}", which the graph trainer does not cover`);
  }
}

interface ConvGeometry {
  strides: [number, number];
  dilations: [number, number];
  padding: string;
}

/** Padding before the first row (or column) under TensorFlow's rule: 'same' puts the odd one at the end. */
function padBefore(size: number, kernel: number, stride: number, padding: string): number {
  if (padding === 'valid') {
    return 0;
  }
  const out = Math.ceil(size / stride);
  return Math.floor(Math.max((out - 1) * stride + kernel - size, 0) / 2);
}

/** Input positions above which a strided convolution's input gradient uses Conv2DBackpropInput (see inputGradient). */
const STRIDED_VIA_CONVOLUTION_MAX_PIXELS = 64;

/**
 * Gradient of a convolution with respect to its input.
 *
 * TensorFlow 2.21's Conv2DBackpropInput on the CPU is slow for feature maps
 * of a few pixels with many channels. On a 2-core Zen 3 EPYC, at batch 32,
 * it took 194 ms for a 3x3, stride-2, 512-channel convolution at 4x4
 * pixels, whose forward pass takes a few ms. A 1x1 convolution at 2x2
 * pixels from 1,024 to 2,048 channels took 142 ms. ResNet50V2's last stage
 * spent 1.6 s of a 2.2 s step there. The same gradient is:
 *
 * - for a 1x1 convolution with stride 1, a matrix product of the output
 *   gradient with the transposed kernel;
 * - otherwise, a stride-1 'valid' convolution of the output gradient, spread
 *   out by the stride (zeros between the values) and zero-padded by
 *   kernel - 1 - padding, with the kernel flipped in space and its channel
 *   axes swapped.
 *
 * The spread-out form does stride^2 times the work of the forward pass, so
 * strided convolutions on more than STRIDED_VIA_CONVOLUTION_MAX_PIXELS input
 * pixels keep Conv2DBackpropInput, which is fast there. Depthwise and
 * dilated convolutions keep TensorFlow's kernels.
 */
function inputGradient(g: TfGraph, name: string, depthwise: boolean, x: Sym, w: Sym, dy: Sym, attrs: { [key: string]: Attr }, geometry: ConvGeometry): Sym {
  const op = depthwise ? 'DepthwiseConv2dNative' : 'Conv2D';
  const [, height, width, inChannels] = x.shape as [number, number, number, number];
  const [kh, kw, , outChannels] = w.shape as [number, number, number, number];
  const [sh, sw] = geometry.strides;
  const strided = sh > 1 || sw > 1;
  const dilated = geometry.dilations.some((d) => d !== 1);
  if (depthwise || dilated || (strided && height * width > STRIDED_VIA_CONVOLUTION_MAX_PIXELS)) {
    return g.op(`${op}BackpropInput`, `${name}/grad_input`, [g.shape(x), w, dy], attrs, x.shape);
  }
  const int = { type: DT.int32 };

  if (kh === 1 && kw === 1 && !strided) {
    const rows = g.reshape(dy, [-1, outChannels]);
    const kernel = g.reshape(w, [inChannels, outChannels]);
    const product = g.op('MatMul', `${name}/grad_input_matmul`, [rows, kernel], { T, transpose_a: { b: false }, transpose_b: { b: true } }, [-1, inChannels]);
    return g.reshape(product, [-1, height, width, inChannels]);
  }
  const [, outHeight, outWidth] = dy.shape as [number, number, number, number];
  let spread = dy;
  const spreadHeight = (outHeight - 1) * sh + 1;
  const spreadWidth = (outWidth - 1) * sw + 1;
  if (strided) {
    const split = g.reshape(dy, [-1, outHeight, 1, outWidth, 1, outChannels]);
    const gaps = g.intConstant(`${name}/grad_gaps`, [0, 0, 0, 0, 0, sh - 1, 0, 0, 0, sw - 1, 0, 0], [6, 2]);
    const padded = g.op('Pad', `${name}/grad_spread`, [split, gaps], { T, Tpaddings: int }, [-1, outHeight, sh, outWidth, sw, outChannels]);
    const merged = g.reshape(padded, [-1, outHeight * sh, outWidth * sw, outChannels]);
    const begin = g.intConstant(`${name}/grad_spread_begin`, [0, 0, 0, 0]);
    const size = g.intConstant(`${name}/grad_spread_size`, [-1, spreadHeight, spreadWidth, outChannels]);
    spread = g.op('Slice', `${name}/grad_spread_trim`, [merged, begin, size], { T, Index: int }, [-1, spreadHeight, spreadWidth, outChannels]);
  }

  const top = kh - 1 - padBefore(height, kh, sh, geometry.padding);
  const left = kw - 1 - padBefore(width, kw, sw, geometry.padding);
  const bottom = height + kh - 1 - spreadHeight - top;
  const right = width + kw - 1 - spreadWidth - left;
  const paddings = g.intConstant(`${name}/grad_full_padding`, [0, 0, top, Math.max(bottom, 0), left, Math.max(right, 0), 0, 0], [4, 2]);
  let full = g.op('Pad', `${name}/grad_full`, [spread, paddings], { T, Tpaddings: int }, [-1, top + spreadHeight + Math.max(bottom, 0), left + spreadWidth + Math.max(right, 0), outChannels]);
  if (bottom < 0 || right < 0) {
    const begin = g.intConstant(`${name}/grad_full_begin`, [0, 0, 0, 0]);
    const size = g.intConstant(`${name}/grad_full_size`, [-1, height + kh - 1, width + kw - 1, outChannels]);
    full = g.op('Slice', `${name}/grad_full_trim`, [full, begin, size], { T, Index: int }, [-1, height + kh - 1, width + kw - 1, outChannels]);
  }

  const flipped = g.op('ReverseV2', `${name}/grad_kernel_flipped`, [w, g.intConstant(`${name}/grad_flip_axes`, [0, 1])], { T, Tidx: int }, w.shape);
  const swapped = g.op('Transpose', `${name}/grad_kernel_swapped`, [flipped, g.intConstant(`${name}/grad_swap`, [0, 1, 3, 2])], { T, Tperm: int }, [kh, kw, outChannels, inChannels]);
  const convAttrs: { [key: string]: Attr } = { ...attrs, strides: { ints: [1, 1, 1, 1] }, padding: { s: 'VALID' } };
  return g.op('Conv2D', `${name}/grad_input`, [full, swapped], convAttrs, x.shape);
}

/** Gradient of a convolution with respect to its kernel: a matrix product for a 1x1 convolution with stride 1, else TensorFlow's kernel. */
function filterGradient(g: TfGraph, name: string, depthwise: boolean, x: Sym, w: Sym, dy: Sym, attrs: { [key: string]: Attr }, geometry: ConvGeometry, filterSizes: Sym): Sym {
  const op = depthwise ? 'DepthwiseConv2dNative' : 'Conv2D';
  const [kh, kw, inChannels, outChannels] = w.shape as [number, number, number, number];
  const pointwise = !depthwise && kh === 1 && kw === 1 && geometry.strides.every((s) => s === 1) && geometry.dilations.every((d) => d === 1);
  if (!pointwise) {
    return g.op(`${op}BackpropFilter`, `${name}/grad_filter`, [x, filterSizes, dy], attrs, w.shape);
  }
  const inputs = g.reshape(x, [-1, inChannels]);
  const grads = g.reshape(dy, [-1, outChannels]);
  const product = g.op('MatMul', `${name}/grad_filter_matmul`, [inputs, grads], { T, transpose_a: { b: true }, transpose_b: { b: false } }, [inChannels, outChannels]);
  return g.reshape(product, w.shape);
}

function convolution(ctx: Context, layer: tf.layers.Layer, x: Sym, outShape: number[], depthwise: boolean): Sym {
  const g = ctx.g;
  const config = layer.getConfig();
  if (config['dataFormat'] !== undefined && config['dataFormat'] !== 'channelsLast') {
    throw new GraphUnsupportedError(`layer "${layer.name}" is not channels-last`);
  }
  if (!depthwise && (Number(config['groups'] ?? 1) !== 1)) {
    throw new GraphUnsupportedError(`layer "${layer.name}" uses grouped convolution`);
  }
  const kernel = weightSym(ctx, layer, depthwise ? 'depthwise_kernel' : 'kernel');
  if (kernel === undefined) {
    throw new GraphUnsupportedError(`layer "${layer.name}" has no kernel`);
  }
  const bias = weightSym(ctx, layer, 'bias');
  const [sh, sw] = pair(config['strides'] ?? 1);
  const [dh, dw] = depthwise ? [1, 1] : pair(config['dilationRate'] ?? 1);

  const kernelShape = kernel.sym.shape;
  const bn = ctx.folds.get(layer.name);
  let w = kernel.sym;
  let b = bias?.sym;
  if (bn !== undefined) {
    const { scale, offset } = frozenAffine(bn);
    // Depthwise output channel c * multiplier + m comes from kernel[:, :, c, m].
    const scaleShape = depthwise ? [kernelShape[2] as number, kernelShape[3] as number] : [kernelShape[3] as number];
    if (kernel.sym.grad) {
      w = g.binary('Mul', `${layer.name}/folded_kernel`, kernel.sym, g.constant(`${layer.name}/bn_scale`, scale, scaleShape));
    } else {
      const values = kernel.values;
      const channels = scale.length;
      w = g.constant(`${layer.name}/folded_kernel`, values.map((v, i) => v * (scale[i % channels] as number)), kernelShape);
    }
    if (bias === undefined) {
      b = g.constant(`${layer.name}/folded_bias`, offset, [offset.length]);
    } else if (bias.sym.grad) {
      b = g.binary('AddV2', `${layer.name}/folded_bias`, g.binary('Mul', `${layer.name}/bias_scaled`, bias.sym, g.constant(`${layer.name}/bn_scale_b`, scale, [scale.length])), g.constant(`${layer.name}/bn_offset`, offset, [offset.length]));
    } else {
      b = g.constant(`${layer.name}/folded_bias`, bias.values.map((v, i) => v * (scale[i] as number) + (offset[i] as number)), [offset.length]);
    }
  }

  const geometry: ConvGeometry = { strides: [sh, sw], dilations: [dh, dw], padding: String(config['padding'] ?? 'valid') };
  const y = convolutionNode(g, layer.name, depthwise, x, w, b, outShape, geometry);
  return activate(ctx, layer, y, activationName(config));
}

/** Adds a convolution node, with its bias when given, on the tape with both gradients. */
function convolutionNode(g: TfGraph, name: string, depthwise: boolean, x: Sym, w: Sym, b: Sym | undefined, outShape: number[], geometry: ConvGeometry): Sym {
  const attrs: { [key: string]: Attr } = {
    T,
    strides: { ints: [1, ...geometry.strides, 1] },
    padding: { s: geometry.padding.toUpperCase() },
    data_format: { s: 'NHWC' },
    dilations: { ints: [1, ...geometry.dilations, 1] },
  };
  const op = depthwise ? 'DepthwiseConv2dNative' : 'Conv2D';
  const filterSizes = g.intConstant(`${name}/filter_sizes`, w.shape);
  const y: Sym = g.op(op, name, [x, w], attrs, outShape, (dy) => [
    x.grad ? inputGradient(g, name, depthwise, x, w, dy, attrs, geometry) : undefined,
    w.grad ? filterGradient(g, name, depthwise, x, w, dy, attrs, geometry, filterSizes) : undefined,
  ]);
  if (b === undefined) {
    return y;
  }
  return g.op('BiasAdd', `${name}/bias_add`, [y, b], { T, data_format: { s: 'NHWC' } }, outShape, (dy) => [
    dy,
    b.grad ? g.op('BiasAddGrad', `${name}/grad_bias`, [dy], { T, data_format: { s: 'NHWC' } }, b.shape) : undefined,
  ]);
}

/** ChannelwiseConv2D (ConvNeXt's grouped Conv2D): a depthwise convolution with the kernel [k, k, 1, C] read as [k, k, C, 1]. */
function channelwise(ctx: Context, layer: tf.layers.Layer, x: Sym, outShape: number[]): Sym {
  const config = layer.getConfig();
  const k = Number(config['kernelSize']);
  const channels = Number(config['channels']);
  const kernel = weightSym(ctx, layer, 'kernel');
  if (kernel === undefined) {
    throw new GraphUnsupportedError(`layer "${layer.name}" has no kernel`);
  }
  const w = ctx.g.reshape(kernel.sym, [k, k, channels, 1]);
  const geometry: ConvGeometry = { strides: [1, 1], dilations: [1, 1], padding: String(config['padding'] ?? 'valid') };
  return convolutionNode(ctx.g, layer.name, true, x, w, weightSym(ctx, layer, 'bias')?.sym, outShape, geometry);
}

function affineConst(ctx: Context, name: string, x: Sym, scale: Float32Array, offset: Float32Array): Sym {
  const channels = scale.length;
  let y = x;
  if (scale.some((s) => s !== 1)) {
    y = ctx.g.binary('Mul', `${name}/scale`, y, ctx.g.constant(`${name}/scale_value`, scale, [channels]));
  }
  if (offset.some((o) => o !== 0)) {
    y = ctx.g.binary('AddV2', `${name}/offset`, y, ctx.g.constant(`${name}/offset_value`, offset, [channels]));
  }
  return y;
}

function perChannel(values: number | number[], channels: number): Float32Array {
  return Array.isArray(values) ? Float32Array.from(values) : new Float32Array(channels).fill(values);
}

type Converter = (ctx: Context, layer: tf.layers.Layer, inputs: Sym[], outShape: number[]) => Sym;

const CONVERTERS: { [className: string]: Converter } = {
  Conv2D: (ctx, layer, [x], out) => convolution(ctx, layer, x as Sym, out, false),
  DepthwiseConv2D: (ctx, layer, [x], out) => convolution(ctx, layer, x as Sym, out, true),
  ChannelwiseConv2D: (ctx, layer, [x], out) => channelwise(ctx, layer, x as Sym, out),
  BatchNormalization: (ctx, layer, [x]) => {
    if (!(layer instanceof FrozenBatchNormalization)) {
      throw new GraphUnsupportedError(`batch-norm layer "${layer.name}" uses batch statistics in training mode`);
    }
    if (ctx.folded.has(layer.name)) {
      return x as Sym;
    }
    const { scale, offset } = frozenAffine(layer);
    return affineConst(ctx, layer.name, x as Sym, scale, offset);
  },
  ReLU: (ctx, layer, [x]) => {
    const maxValue = layer.getConfig()['maxValue'] as number | null | undefined;
    if (maxValue != null && maxValue !== 6) {
      throw new GraphUnsupportedError(`ReLU layer "${layer.name}" clips at ${maxValue}; only 6 is covered`);
    }
    return activate(ctx, layer, x as Sym, maxValue == null ? 'relu' : 'relu6');
  },
  Activation: (ctx, layer, [x]) => activate(ctx, layer, x as Sym, activationName(layer.getConfig())),
  Softmax: (ctx, layer, [x]) => activate(ctx, layer, x as Sym, 'softmax'),
  ZeroPadding2D: (ctx, layer, [input], out) => {
    const g = ctx.g;
    const x = input as Sym;
    const [[top, bottom], [left, right]] = layer.getConfig()['padding'] as [[number, number], [number, number]];
    const paddings = g.intConstant(`${layer.name}/paddings`, [0, 0, top, bottom, left, right, 0, 0], [4, 2]);
    return g.op('Pad', layer.name, [x, paddings], { T, Tpaddings: { type: DT.int32 } }, out, (dy) => [
      g.op('Slice', `${layer.name}/grad`, [dy, g.intConstant(`${layer.name}/grad_begin`, [0, top, left, 0]), g.intConstant(`${layer.name}/grad_size`, [-1, ...x.shape.slice(1)])], { T, Index: { type: DT.int32 } }, x.shape),
    ]);
  },
  MaxPooling2D: (ctx, layer, [input], out) => {
    const g = ctx.g;
    const x = input as Sym;
    const config = layer.getConfig();
    const [kh, kw] = pair(config['poolSize'] ?? 2);
    const [sh, sw] = pair(config['strides'] ?? config['poolSize'] ?? 2);
    const attrs: { [key: string]: Attr } = {
      T,
      ksize: { ints: [1, kh, kw, 1] },
      strides: { ints: [1, sh, sw, 1] },
      padding: { s: String(config['padding'] ?? 'valid').toUpperCase() },
      data_format: { s: 'NHWC' },
    };
    const y: Sym = g.op('MaxPool', layer.name, [x], attrs, out, (dy) => [g.op('MaxPoolGrad', `${layer.name}/grad`, [x, y, dy], attrs, x.shape)]);
    return y;
  },
  GlobalAveragePooling2D: (ctx, layer, [input], out) => {
    const g = ctx.g;
    const x = input as Sym;
    if (layer.getConfig()['keepDims'] === true) {
      throw new GraphUnsupportedError(`pooling layer "${layer.name}" keeps dimensions`);
    }
    const [, h, w, c] = x.shape as [number, number, number, number];
    const axes = g.intConstant(`${layer.name}/axes`, [1, 2]);
    return g.op('Mean', layer.name, [x, axes], { T, Tidx: { type: DT.int32 }, keep_dims: { b: false } }, out, (dy) => {
      const expanded = g.op('Reshape', `${layer.name}/grad_expand`, [dy, g.intConstant(`${layer.name}/grad_shape`, [-1, 1, 1, c])], { T, Tshape: { type: DT.int32 } }, [-1, 1, 1, c]);
      const spread = g.op('BroadcastTo', `${layer.name}/grad_spread`, [expanded, g.shape(x)], { T, Tidx: { type: DT.int32 } }, x.shape);
      return [g.binary('Mul', `${layer.name}/grad`, spread, g.constant(`${layer.name}/grad_scale`, [1 / (h * w)], []))];
    });
  },
  Add: (ctx, layer, inputs) => inputs.slice(1).reduce((sum, x, i) => ctx.g.binary('AddV2', i === inputs.length - 2 ? layer.name : `${layer.name}/partial`, sum, x), inputs[0] as Sym),
  Multiply: (ctx, layer, inputs) => inputs.slice(1).reduce((product, x, i) => ctx.g.binary('Mul', i === inputs.length - 2 ? layer.name : `${layer.name}/partial`, product, x), inputs[0] as Sym),
  Dense: (ctx, layer, [symbol], out) => {
    const g = ctx.g;
    const input = symbol as Sym;
    const kernel = weightSym(ctx, layer, 'kernel');
    if (kernel === undefined) {
      throw new GraphUnsupportedError(`layer "${layer.name}" has no kernel`);
    }
    const w = kernel.sym;
    const attrs = (a: boolean, b: boolean): { [key: string]: Attr } => ({ T, transpose_a: { b: a }, transpose_b: { b } });
    // A dense layer on feature maps (ConvNeXt's pointwise layers) multiplies the rows of the flattened map.
    const x = input.shape.length === 2 ? input : g.reshape(input, [-1, input.shape[input.shape.length - 1] as number]);
    const units = out[out.length - 1] as number;
    let y: Sym = g.op('MatMul', `${layer.name}/matmul`, [x, w], attrs(false, false), [-1, units], (dy) => [
      x.grad ? g.op('MatMul', `${layer.name}/grad_input`, [dy, w], attrs(false, true), x.shape) : undefined,
      w.grad ? g.op('MatMul', `${layer.name}/grad_kernel`, [x, dy], attrs(true, false), w.shape) : undefined,
    ]);
    const bias = weightSym(ctx, layer, 'bias');
    if (bias !== undefined) {
      const b = bias.sym;
      y = g.op('BiasAdd', `${layer.name}/bias_add`, [y, b], { T, data_format: { s: 'NHWC' } }, [-1, units], (dy) => [
        dy,
        b.grad ? g.op('BiasAddGrad', `${layer.name}/grad_bias`, [dy], { T, data_format: { s: 'NHWC' } }, b.shape) : undefined,
      ]);
    }
    if (input.shape.length !== 2) {
      y = g.reshape(y, out);
    }
    return activate(ctx, layer, y, activationName(layer.getConfig()));
  },
  Dropout: (ctx, layer, [input], out) => {
    const x = input as Sym;
    const config = layer.getConfig();
    const rate = Number(config['rate'] ?? 0);
    if (!(rate > 0)) {
      return x;
    }
    const noise = config['noiseShape'] as Array<number | null> | null | undefined;
    const shape = out.slice(1).map((size, i) => noise?.[i + 1] ?? size);
    const mask = ctx.g.placeholder(`mask${ctx.masks.length}`, [-1, ...shape]);
    ctx.masks.push({ layerName: layer.name, rate, shape, input: mask });
    return ctx.g.binary('Mul', layer.name, x, mask);
  },
  LayerNormalization: (ctx, layer, [x]) => layerNormalization(ctx, layer, x as Sym),
  LayerScale: (ctx, layer, [x]) => {
    const gamma = weightSym(ctx, layer, 'gamma');
    if (gamma === undefined) {
      throw new GraphUnsupportedError(`layer "${layer.name}" has no gamma`);
    }
    return ctx.g.binary('Mul', layer.name, x as Sym, gamma.sym);
  },
  Reshape: (ctx, layer, [x], out) => ctx.g.reshape(x as Sym, [-1, ...out.slice(1)]),
  Flatten: (ctx, layer, [x], out) => ctx.g.reshape(x as Sym, [-1, ...out.slice(1)]),
  Rescaling: (ctx, layer, [input]) => {
    const x = input as Sym;
    const config = layer.getConfig();
    const channels = x.shape[x.shape.length - 1] as number;
    return affineConst(ctx, layer.name, x, perChannel(config['scale'] as number | number[], channels), perChannel((config['offset'] as number | number[] | undefined) ?? 0, channels));
  },
  Normalization: (ctx, layer, [input]) => {
    const x = input as Sym;
    const config = layer.getConfig();
    const mean = (config['mean'] as number[] | null) ?? Array.from(weightOf(layer, 'mean')?.read().dataSync() ?? []);
    const variance = (config['variance'] as number[] | null) ?? Array.from(weightOf(layer, 'variance')?.read().dataSync() ?? []);
    // (x - mean) / max(sqrt(variance), 1e-7), as lib/models/layers.ts computes it.
    const inverse = Float32Array.from(variance, (v) => 1 / Math.max(Math.sqrt(v), 1e-7));
    return affineConst(ctx, layer.name, x, inverse, Float32Array.from(mean, (m, i) => -m * (inverse[i] as number)));
  },
};

/** Layer classes the graph trainer converts. */
export const GRAPH_LAYER_CLASSES = ['InputLayer', ...Object.keys(CONVERTERS)].sort();

/** Conv layers whose only consumer is a frozen batch norm, as lib/models/fold.ts pairs them. */
function findFolds(model: tf.LayersModel): Map<string, FrozenBatchNormalization> {
  const consumers = new Map<string, tf.layers.Layer[]>();
  for (const layer of model.layers) {
    if (layer.getClassName() === 'InputLayer') {
      continue;
    }
    for (const input of modelNode(model, layer).inputs) {
      consumers.set(input.sourceLayer.name, [...(consumers.get(input.sourceLayer.name) ?? []), layer]);
    }
  }
  const folds = new Map<string, FrozenBatchNormalization>();
  for (const layer of model.layers) {
    const className = layer.getClassName();
    if (className !== 'Conv2D' && className !== 'DepthwiseConv2D') {
      continue;
    }
    const next = consumers.get(layer.name) ?? [];
    const bn = next[0];
    const linear = activationName(layer.getConfig()) === 'linear';
    if (next.length === 1 && bn instanceof FrozenBatchNormalization && linear && !model.outputNames.includes(layer.name)) {
      folds.set(layer.name, bn);
    }
  }
  return folds;
}

export interface GraphStepOptions {
  beta1?: number;
  beta2?: number;
  epsilon?: number;
}

interface BuiltGraph {
  bytes: Uint8Array;
  masks: GraphMask[];
  variableCount: number;
}

/** Writes the SavedModel of a model's training step; exported for tests. */
export function buildTrainGraph(model: tf.LayersModel, trained: readonly tf.Variable[], options: GraphStepOptions = {}): BuiltGraph {
  if (model.inputs.length !== 1 || model.outputs.length !== 1) {
    throw new GraphUnsupportedError(`the model has ${model.inputs.length} inputs and ${model.outputs.length} outputs; one of each is covered`);
  }
  const g = new TfGraph();
  const ctx: Context = { g, trained: new Map(), folds: findFolds(model), folded: new Set(), masks: [] };
  for (const bn of ctx.folds.values()) {
    ctx.folded.add(bn.name);
  }
  // Variables: weight, first and second moment per trained tensor.
  const handles = trained.map((v, i) => ({
    variable: v,
    weight: g.variable(`var${i}`, [...v.shape]),
    m: g.variable(`var${i}_m`, [...v.shape]),
    v: g.variable(`var${i}_v`, [...v.shape]),
  }));
  const reads = handles.map((h) => {
    const read = g.read(h.weight, [...h.variable.shape], true);
    ctx.trained.set(h.variable.name, read);
    return read;
  });

  const input = model.inputs[0] as tf.SymbolicTensor;
  const images = g.placeholder('images', [-1, ...input.shape.slice(1).map((d) => d ?? -1)]);
  const values = new Map<number, Sym>([[input.id, images]]);
  for (const layer of model.layers) {
    const className = layer.getClassName();
    if (className === 'InputLayer') {
      continue;
    }
    const converter = CONVERTERS[className];
    if (converter === undefined) {
      throw new GraphUnsupportedError(`layer "${layer.name}" is a ${className}, which the graph trainer does not cover`);
    }
    const node = modelNode(model, layer);
    const inputs = node.inputs.map((t) => values.get(t.id) as Sym);
    const output = node.outputs[0] as tf.SymbolicTensor;
    values.set(output.id, converter(ctx, layer, inputs, output.shape.map((d) => d ?? -1)));
  }
  const probabilities = values.get((model.outputs[0] as tf.SymbolicTensor).id) as Sym;
  const classes = probabilities.shape[1] as number;

  // Loss: -sum(targets * log(clip(p))), where the caller's targets hold the one-hot label times sampleWeight / batchSize.
  const targets = g.placeholder('targets', [-1, classes]);
  const clipped = g.op('ClipByValue', 'loss/clipped', [probabilities, g.constant('loss/low', [EPSILON], []), g.constant('loss/high', [1 - EPSILON], [])], { T }, probabilities.shape);
  const logs = g.op('Log', 'loss/log', [clipped], { T }, probabilities.shape);
  const weighted = g.op('Mul', 'loss/weighted', [targets, logs], { T }, probabilities.shape);
  const loss = g.op('Neg', 'loss/value', [g.op('Sum', 'loss/sum', [weighted, g.intConstant('loss/axes', [0, 1])], { T, Tidx: { type: DT.int32 }, keep_dims: { b: false } }, [])], { T }, []);
  // d loss / d p = -targets / clip(p) where p lies inside the clip range (tfjs's clipByValue gradient includes the bounds).
  const inside = g.op(
    'LogicalAnd',
    'loss/inside',
    [
      g.op('GreaterEqual', 'loss/above', [probabilities, g.constant('loss/low_grad', [EPSILON], [])], { T }, probabilities.shape, undefined, DT.bool),
      g.op('LessEqual', 'loss/below', [probabilities, g.constant('loss/high_grad', [1 - EPSILON], [])], { T }, probabilities.shape, undefined, DT.bool),
    ],
    {},
    probabilities.shape,
    undefined,
    DT.bool,
  );
  const insideFloat = g.op('Cast', 'loss/inside_float', [inside], { SrcT: { type: DT.bool }, DstT: T, Truncate: { b: false } }, probabilities.shape);
  const seed = g.op('Mul', 'loss/grad', [g.op('Neg', 'loss/grad_neg', [g.op('RealDiv', 'loss/grad_div', [targets, clipped], { T }, probabilities.shape)], { T }, probabilities.shape), insideFloat], { T }, probabilities.shape);
  const grads = g.gradients(probabilities, seed, reads);
  const missing = trained.filter((_, i) => grads[i] === undefined).map((v) => v.name);
  if (missing.length > 0) {
    throw new GraphUnsupportedError(`no gradient reaches ${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ', ...' : ''}`);
  }

  // Adam. lr, beta powers and the scaled epsilon change per step and are fed.
  const scalar = (name: string) => g.placeholder(name, []);
  const beta1Power = scalar('beta1_power');
  const beta2Power = scalar('beta2_power');
  const learningRate = scalar('learning_rate');
  const epsilon = scalar('epsilon');
  const beta1 = g.constant('adam/beta1', [options.beta1 ?? 0.9], []);
  const beta2 = g.constant('adam/beta2', [options.beta2 ?? 0.999], []);
  const updates = handles.map((h, i) =>
    g.add('ResourceApplyAdam', `adam/update${i}`, [h.weight, h.m, h.v, beta1Power, beta2Power, learningRate, beta1, beta2, epsilon, grads[i] as Sym], {
      T,
      use_locking: { b: false },
      use_nesterov: { b: false },
    }),
  );
  const control = updates.map((u) => `^${u}`);
  const lossOut = g.add('Identity', 'loss_out', [loss.name, ...control], { T });
  const predicted = g.add('ArgMax', 'predicted', [probabilities, g.intConstant('predicted/axis', [1], []).name, ...control], {
    T,
    Tidx: { type: DT.int32 },
    output_type: { type: DT.int32 },
  });

  // load / state signatures.
  const loadInputs: Record<string, TensorInfo> = {};
  const assigns: string[] = [];
  const stateOutputs: Record<string, TensorInfo> = {};
  handles.forEach((h, i) => {
    const shape = [...h.variable.shape];
    for (const [kind, handle] of [['w', h.weight], ['m', h.m], ['v', h.v]] as const) {
      const key = `${kind}${i}`;
      const value = g.placeholder(`load/${key}`, shape);
      loadInputs[key] = { name: `${value.name}:0`, dtype: DT.float, shape };
      assigns.push(g.add('AssignVariableOp', `load/assign_${key}`, [handle, value.name], { dtype: T }));
      const read = g.add('ReadVariableOp', `state/${key}`, [handle], { dtype: T });
      stateOutputs[key] = { name: `${read}:0`, dtype: DT.float, shape };
    }
  });
  const loaded = g.add('Const', 'load/done', assigns.map((a) => `^${a}`), { dtype: { type: DT.int32 }, value: { tensor: tensorProto(DT.int32, [], Int32Array.of(0)) } });

  const trainInputs: Record<string, TensorInfo> = {
    images: { name: `${images.name}:0`, dtype: DT.float, shape: images.shape },
    targets: { name: `${targets.name}:0`, dtype: DT.float, shape: targets.shape },
    beta1_power: { name: `${beta1Power.name}:0`, dtype: DT.float, shape: [] },
    beta2_power: { name: `${beta2Power.name}:0`, dtype: DT.float, shape: [] },
    learning_rate: { name: `${learningRate.name}:0`, dtype: DT.float, shape: [] },
    epsilon: { name: `${epsilon.name}:0`, dtype: DT.float, shape: [] },
  };
  ctx.masks.forEach((mask, i) => {
    trainInputs[`mask${i}`] = { name: `${mask.input.name}:0`, dtype: DT.float, shape: mask.input.shape };
  });
  const signatures: Record<string, Signature> = {
    train: {
      inputs: trainInputs,
      outputs: {
        loss: { name: `${lossOut}:0`, dtype: DT.float, shape: [] },
        predicted: { name: `${predicted}:0`, dtype: DT.int32, shape: [-1] },
      },
    },
    load: { inputs: loadInputs, outputs: { done: { name: `${loaded}:0`, dtype: DT.int32, shape: [] } } },
    state: { inputs: {}, outputs: stateOutputs },
  };
  return {
    bytes: savedModelBytes(g.nodes, ['serve'], signatures),
    masks: ctx.masks.map(({ layerName, rate, shape }) => ({ layerName, rate, shape })),
    variableCount: trained.length,
  };
}

/** The part of tfjs-node's TFSavedModel that the step uses. */
interface SavedModelSession {
  predict(inputs: tf.NamedTensorMap): tf.NamedTensorMap;
  dispose(): void;
}

type NamedTensor = { name: string; tensor: tf.Tensor };

/** Returns why the graph trainer cannot run on the active backend, or undefined when it can. */
export function graphBackendUnusableReason(): string | undefined {
  if (tf.getBackend() !== 'tensorflow') {
    return `the backend is ${tf.getBackend()}, not tfjs-node`;
  }
  return undefined;
}

/**
 * One model's training step in a TensorFlow session. Create it with
 * GraphTrainStep.create once the tfjs model has the weights to start from;
 * call syncToModel before reading the tfjs model (validation, checkpoints).
 */
export class GraphTrainStep {
  private iterations: number;

  private constructor(
    private readonly dir: string,
    private readonly sessions: { train: SavedModelSession; load: SavedModelSession; state: SavedModelSession },
    readonly masks: GraphMask[],
    private readonly variables: readonly tf.Variable[],
    private readonly learningRate: number,
    private readonly beta1: number,
    private readonly beta2: number,
    private readonly epsilon: number,
    iterations: number,
  ) {
    this.iterations = iterations;
  }

  /**
   * Builds and loads the graph, then copies the variables' current values
   * and `optimizerState` (GroupedAdamOptimizer's layout: [iterations, first
   * moments..., second moments...], or just [iterations] before any step) into it.
   */
  static async create(
    model: tf.LayersModel,
    variables: readonly tf.Variable[],
    learningRate: number,
    optimizerState: readonly NamedTensor[],
    options: GraphStepOptions = {},
  ): Promise<GraphTrainStep> {
    const reason = graphBackendUnusableReason();
    if (reason !== undefined) {
      throw new GraphUnsupportedError(reason);
    }
    const built = buildTrainGraph(model, variables, options);
    const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'fer-train-graph-'));
    try {
      await fs.promises.writeFile(path.join(dir, 'saved_model.pb'), built.bytes);
      // tfjs-node shares one session between signatures loaded from the same folder and tags.
      const node = require('@tensorflow/tfjs-node') as { node: { loadSavedModel(dir: string, tags: string[], signature: string): Promise<SavedModelSession> } };
      const train = await node.node.loadSavedModel(dir, ['serve'], 'train');
      const load = await node.node.loadSavedModel(dir, ['serve'], 'load');
      const state = await node.node.loadSavedModel(dir, ['serve'], 'state');
      const first = optimizerState[0];
      const iterations = first === undefined ? 0 : ((await first.tensor.data())[0] as number);
      const step = new GraphTrainStep(
        dir,
        { train, load, state },
        built.masks,
        variables,
        learningRate,
        options.beta1 ?? 0.9,
        options.beta2 ?? 0.999,
        options.epsilon ?? tf.backend().epsilon(),
        iterations,
      );
      step.load(optimizerState.slice(1));
      return step;
    } catch (error) {
      await fs.promises.rm(dir, { recursive: true, force: true });
      throw error;
    }
  }

  private load(moments: readonly NamedTensor[]): void {
    const count = this.variables.length;
    if (moments.length !== 0 && moments.length !== 2 * count) {
      throw new Error(`Graph training step: the optimizer state has ${moments.length} moments for ${count} variables; expected ${2 * count} or none.`);
    }
    const feeds: tf.NamedTensorMap = {};
    const zeros: tf.Tensor[] = [];
    this.variables.forEach((variable, i) => {
      feeds[`w${i}`] = variable;
      for (const [kind, offset] of [['m', 0], ['v', count]] as const) {
        const saved = moments[offset + i]?.tensor;
        if (saved !== undefined) {
          feeds[`${kind}${i}`] = saved;
        } else {
          const zero = tf.zeros(variable.shape);
          zeros.push(zero);
          feeds[`${kind}${i}`] = zero;
        }
      }
    });
    const out = this.sessions.load.predict(feeds);
    Object.values(out).forEach((t) => t.dispose());
    zeros.forEach((t) => t.dispose());
  }

  /**
   * Runs one training step. `targets` has each sample's one-hot label times its
   * weight divided by the batch size, so that the loss is the batch mean.
   * `masks` are the dropout multipliers in the order of `this.masks`.
   */
  run(images: tf.Tensor, targets: tf.Tensor2D, masks: readonly tf.Tensor[]): { loss: tf.Scalar; predicted: tf.Tensor1D } {
    const t = this.iterations + 1;
    const beta1Power = Math.pow(this.beta1, t);
    const beta2Power = Math.pow(this.beta2, t);
    const scalars = [beta1Power, beta2Power, this.learningRate, this.epsilon * Math.sqrt(1 - beta2Power)].map((v) => tf.scalar(v));
    const feeds: tf.NamedTensorMap = {
      images,
      targets,
      beta1_power: scalars[0] as tf.Tensor,
      beta2_power: scalars[1] as tf.Tensor,
      learning_rate: scalars[2] as tf.Tensor,
      epsilon: scalars[3] as tf.Tensor,
    };
    masks.forEach((mask, i) => {
      feeds[`mask${i}`] = mask;
    });
    try {
      const out = this.sessions.train.predict(feeds);
      this.iterations = t;
      return { loss: out['loss'] as tf.Scalar, predicted: out['predicted'] as tf.Tensor1D };
    } finally {
      scalars.forEach((s) => s.dispose());
    }
  }

  /** Copies the graph's weights into the tfjs variables. */
  syncToModel(): void {
    const out = this.sessions.state.predict({});
    this.variables.forEach((variable, i) => variable.assign(out[`w${i}`] as tf.Tensor));
    Object.values(out).forEach((t) => t.dispose());
  }

  /** Returns the Adam state in GroupedAdamOptimizer's checkpoint layout. */
  async getWeights(): Promise<NamedTensor[]> {
    const out = this.sessions.state.predict({});
    const result: NamedTensor[] = [{ name: 'iter', tensor: tf.scalar(this.iterations, 'int32') }];
    for (const kind of ['m', 'v'] as const) {
      this.variables.forEach((variable, i) => result.push({ name: `${variable.name}/${kind}`, tensor: out[`${kind}${i}`] as tf.Tensor }));
    }
    this.variables.forEach((_, i) => (out[`w${i}`] as tf.Tensor).dispose());
    return result;
  }

  async dispose(): Promise<void> {
    // The three signatures share one session, which tfjs-node deletes with the last of them.
    this.sessions.train.dispose();
    this.sessions.load.dispose();
    this.sessions.state.dispose();
    await fs.promises.rm(this.dir, { recursive: true, force: true });
  }
}
