/**
 * Export of a TensorFlow.js layers model to ONNX, written from the layer
 * graph without Python tools.
 *
 * The exported graph takes the same NHWC float32 input as the tfjs model and
 * returns the same outputs. Convolutions and pooling run in ONNX's NCHW
 * layout: every 4-D value carries its layout, and a Transpose is inserted only
 * where an operation needs the other one (layer normalisation and dense
 * layers on feature maps work on the last axis, so ConvNeXt blocks switch
 * twice). Frozen batch normalisation becomes an ONNX BatchNormalization that
 * follows its convolution, which ONNX Runtime folds into the convolution's
 * weights when it loads the model.
 *
 * Covered: the layer classes that the registry's backbones and heads use
 * (MobileNet, MobileNetV2, VGG, ResNetV2, EfficientNet, ConvNeXt) plus a few
 * common ones. Any other class raises UnsupportedLayerError with its name.
 */
import * as tf from '@tensorflow/tfjs';
import { onnx } from 'onnx-proto';

/** ONNX operator set of the exported graph; LayerNormalization needs 17. */
export const ONNX_OPSET = 17;
/** ONNX IR version 8 goes with opset 17 (onnx 1.12). */
const ONNX_IR_VERSION = 8;

const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;

type Layout = 'nhwc' | 'nchw';

/** A value of the ONNX graph with its logical (Keras, NHWC) shape and, for rank 4, its physical layout. */
interface Value {
  name: string;
  shape: Array<number | null>;
  layout: Layout;
  /**
   * Set on the output of a ZeroPadding2D whose only consumers are max
   * pooling layers: no Pad node exists, `name` is the unpadded NCHW source,
   * and the pooling applies the zeros itself (see maxPoolAfterZeroPadding).
   */
  deferredZeroPadding?: { top: number; bottom: number; left: number; right: number; sourceShape: Array<number | null> };
}

export class UnsupportedLayerError extends Error {
  constructor(
    readonly layerName: string,
    readonly className: string,
    detail?: string,
  ) {
    super(
      `ONNX export does not support layer "${layerName}" of class ${className}${detail !== undefined ? ` (${detail})` : ''}. ` +
        `Supported classes: ${SUPPORTED_CLASSES.join(', ')}. Use the TensorFlow.js model for this architecture.`,
    );
    this.name = 'UnsupportedLayerError';
  }
}

export interface OnnxExportOptions {
  /** Key-value pairs stored in the model's metadata_props (class names, preprocessing, ...). */
  metadata?: Record<string, string>;
  /** Graph name; default the model's name. */
  graphName?: string;
  /**
   * Export each dropout layer with a rate above 0 as a multiplication by an
   * extra graph input named "<layer>/mask", instead of as the identity. The
   * caller feeds the scaled keep mask (0 or 1 / (1 - rate)) in the shape of
   * the layer's noise shape, NHWC, batch first. This lets a training-mode
   * forward pass with dropout run in ONNX Runtime.
   */
  dropoutMasks?: boolean;
}

/** A graph input that exportOnnx adds for a dropout mask (OnnxExportOptions.dropoutMasks). */
export interface MaskInput {
  name: string;
  layerName: string;
  rate: number;
  /** Shape with null for the batch dimension. */
  shape: Array<number | null>;
}

type AttributeValue = number | number[] | string | { float: number };

/** Accumulates nodes and initializers of one graph and hands out unique value names. */
class GraphBuilder {
  readonly nodes: onnx.INodeProto[] = [];
  readonly initializers: onnx.ITensorProto[] = [];
  /** Extra graph inputs added by converters (dropout masks). */
  readonly extraInputs: MaskInput[] = [];
  private readonly used = new Set<string>();
  /** Transposed copies already made, by value name and target layout. */
  private readonly converted = new Map<string, Value>();

  uniqueName(base: string): string {
    const clean = base.replace(/[^A-Za-z0-9_./:-]+/g, '_');
    let name = clean;
    for (let i = 1; this.used.has(name); i++) {
      name = `${clean}_${i}`;
    }
    this.used.add(name);
    return name;
  }

  floatConstant(base: string, values: Float32Array | number[], dims: number[]): string {
    const data = values instanceof Float32Array ? values : Float32Array.from(values);
    const name = this.uniqueName(base);
    this.initializers.push({
      name,
      dataType: FLOAT,
      dims,
      rawData: new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)),
    });
    return name;
  }

  int64Constant(base: string, values: number[]): string {
    const name = this.uniqueName(base);
    this.initializers.push({ name, dataType: INT64, dims: [values.length], int64Data: values });
    return name;
  }

  /**
   * Adds a node with one output and returns the output's name: `outputBase`
   * made unique, or `exactOutput` when given (a name reserved with uniqueName).
   */
  node(opType: string, inputs: string[], outputBase: string, attributes: Record<string, AttributeValue> = {}, exactOutput?: string): string {
    const output = exactOutput ?? this.uniqueName(outputBase);
    this.nodes.push({
      opType,
      name: this.uniqueName(`${outputBase}/${opType}`),
      input: inputs,
      output: [output],
      attribute: Object.entries(attributes).map(([name, value]) => attribute(name, value)),
    });
    return output;
  }

  /** Returns `value` in `layout`, transposing a rank-4 value once and reusing the copy. */
  inLayout(value: Value, layout: Layout): Value {
    if (value.shape.length !== 4 || value.layout === layout) {
      return value;
    }
    const key = `${value.name}->${layout}`;
    const cached = this.converted.get(key);
    if (cached !== undefined) {
      return cached;
    }
    const perm = layout === 'nchw' ? [0, 3, 1, 2] : [0, 2, 3, 1];
    const result = { name: this.node('Transpose', [value.name], `${value.name}_${layout}`, { perm }), shape: value.shape, layout };
    this.converted.set(key, result);
    return result;
  }
}

function attribute(name: string, value: AttributeValue): onnx.IAttributeProto {
  const types = onnx.AttributeProto.AttributeType;
  if (typeof value === 'string') {
    return { name, type: types.STRING, s: new TextEncoder().encode(value) };
  }
  if (Array.isArray(value)) {
    return { name, type: types.INTS, ints: value };
  }
  if (typeof value === 'object') {
    return { name, type: types.FLOAT, f: value.float };
  }
  return { name, type: types.INT, i: value };
}

/** Permutes the axes of a row-major array: out[..] = in[perm-ordered index]. */
function permute(data: Float32Array, shape: number[], perm: number[]): Float32Array {
  const rank = shape.length;
  const outShape = perm.map((p) => shape[p] as number);
  const inStrides = new Array<number>(rank).fill(1);
  for (let i = rank - 2; i >= 0; i--) {
    inStrides[i] = (inStrides[i + 1] as number) * (shape[i + 1] as number);
  }
  const stridesInOutOrder = perm.map((p) => inStrides[p] as number);
  const out = new Float32Array(data.length);
  const index = new Array<number>(rank).fill(0);
  for (let o = 0; o < out.length; o++) {
    let source = 0;
    for (let a = 0; a < rank; a++) {
      source += (index[a] as number) * (stridesInOutOrder[a] as number);
    }
    out[o] = data[source] as number;
    for (let a = rank - 1; a >= 0; a--) {
      index[a] = (index[a] as number) + 1;
      if ((index[a] as number) < (outShape[a] as number)) {
        break;
      }
      index[a] = 0;
    }
  }
  return out;
}

/** Reads the layer's weights into float32 arrays keyed by short name ("kernel", "gamma", ...). */
function layerWeights(layer: tf.layers.Layer): Map<string, { data: Float32Array; shape: number[] }> {
  const out = new Map<string, { data: Float32Array; shape: number[] }>();
  for (const weight of layer.weights) {
    const short = (weight.originalName.split('/').pop() as string).replace(/_\d+$/, '');
    const tensor = weight.read();
    out.set(short, { data: Float32Array.from(tensor.dataSync() as Float32Array), shape: [...tensor.shape] });
  }
  return out;
}

function requireWeight(layer: tf.layers.Layer, weights: ReturnType<typeof layerWeights>, name: string): { data: Float32Array; shape: number[] } {
  const weight = weights.get(name);
  if (weight === undefined) {
    throw new Error(`ONNX export: layer "${layer.name}" has no weight "${name}" (it has ${[...weights.keys()].join(', ') || 'none'}).`);
  }
  return weight;
}

/** Explicit [begin, end] padding per spatial axis, TensorFlow's rule for 'same' (the extra row or column at the end). */
function spatialPads(inputSize: number[], kernel: number[], strides: number[], dilations: number[], padding: string): number[] {
  if (padding === 'valid') {
    return [0, 0, 0, 0];
  }
  if (padding !== 'same') {
    throw new Error(`ONNX export: padding "${padding}" is not supported; expected 'same' or 'valid'.`);
  }
  const begin: number[] = [];
  const end: number[] = [];
  inputSize.forEach((size, i) => {
    const stride = strides[i] as number;
    const effectiveKernel = ((kernel[i] as number) - 1) * (dilations[i] as number) + 1;
    const outSize = Math.ceil(size / stride);
    const total = Math.max((outSize - 1) * stride + effectiveKernel - size, 0);
    begin.push(Math.floor(total / 2));
    end.push(total - Math.floor(total / 2));
  });
  return [...begin, ...end];
}

function pair(value: unknown): number[] {
  return Array.isArray(value) ? (value as number[]) : [value as number, value as number];
}

function spatialShape(layer: tf.layers.Layer, value: Value): number[] {
  const [, h, w] = value.shape;
  if (h == null || w == null || value.shape.length !== 4) {
    throw new Error(`ONNX export: layer "${layer.name}" needs a 4-D input with known height and width, got ${JSON.stringify(value.shape)}.`);
  }
  return [h, w];
}

function channelsLast(layer: tf.layers.Layer, config: tf.serialization.ConfigDict): void {
  const format = config['dataFormat'];
  if (format !== undefined && format !== null && format !== 'channelsLast') {
    throw new UnsupportedLayerError(layer.name, layer.getClassName(), `dataFormat ${String(format)}`);
  }
}

/** Shape of a per-channel constant that broadcasts over `value` in its layout. */
function channelDims(value: Value, channels: number): number[] {
  return value.shape.length === 4 && value.layout === 'nchw' ? [channels, 1, 1] : [channels];
}

function perChannel(values: number | number[], channels: number): Float32Array {
  return Array.isArray(values) ? Float32Array.from(values) : new Float32Array(channels).fill(values);
}

function lastDim(layer: tf.layers.Layer, value: Value): number {
  const channels = value.shape[value.shape.length - 1];
  if (channels == null) {
    throw new Error(`ONNX export: layer "${layer.name}" needs a known channel count, got shape ${JSON.stringify(value.shape)}.`);
  }
  return channels;
}

/** y = x * scale + offset per channel, skipping a multiply by 1 or an add of 0. */
function affine(g: GraphBuilder, x: Value, scale: Float32Array, offset: Float32Array, base: string): Value {
  const channels = scale.length;
  let name = x.name;
  if (scale.some((s) => s !== 1)) {
    name = g.node('Mul', [name, g.floatConstant(`${base}/scale`, scale, channelDims(x, channels))], `${base}/scaled`);
  }
  if (offset.some((o) => o !== 0)) {
    name = g.node('Add', [name, g.floatConstant(`${base}/offset`, offset, channelDims(x, channels))], `${base}/shifted`);
  }
  return { ...x, name };
}

function applyActivation(g: GraphBuilder, layer: tf.layers.Layer, x: Value, activation: string, base: string): Value {
  const unary = (op: string, attributes: Record<string, AttributeValue> = {}): Value => ({ ...x, name: g.node(op, [x.name], base, attributes) });
  switch (activation) {
    case 'linear':
      return x;
    case 'relu':
      return unary('Relu');
    case 'relu6':
      return { ...x, name: g.node('Clip', [x.name, g.floatConstant(`${base}/min`, [0], []), g.floatConstant(`${base}/max`, [6], [])], base) };
    case 'sigmoid':
      return unary('Sigmoid');
    case 'tanh':
      return unary('Tanh');
    case 'elu':
      return unary('Elu', { alpha: { float: 1 } });
    case 'selu':
      return unary('Selu');
    case 'softplus':
      return unary('Softplus');
    case 'softsign':
      return unary('Softsign');
    case 'hardSigmoid':
      return unary('HardSigmoid', { alpha: { float: 0.2 }, beta: { float: 0.5 } });
    case 'swish': {
      const sigmoid = g.node('Sigmoid', [x.name], `${base}/sigmoid`);
      return { ...x, name: g.node('Mul', [x.name, sigmoid], base) };
    }
    case 'gelu': {
      // tfjs-layers 4.22's 'gelu' is the exact form x * 0.5 * (1 + erf(x / sqrt(2))).
      const scaled = g.node('Mul', [x.name, g.floatConstant(`${base}/rsqrt2`, [Math.SQRT1_2], [])], `${base}/scaled`);
      const erf = g.node('Erf', [scaled], `${base}/erf`);
      const onePlus = g.node('Add', [erf, g.floatConstant(`${base}/one`, [1], [])], `${base}/cdf2`);
      const half = g.node('Mul', [x.name, g.floatConstant(`${base}/half`, [0.5], [])], `${base}/half_x`);
      return { ...x, name: g.node('Mul', [half, onePlus], base) };
    }
    case 'softmax': {
      const last = g.inLayout(x, 'nhwc');
      return { ...last, name: g.node('Softmax', [last.name], base, { axis: -1 }) };
    }
    default:
      throw new UnsupportedLayerError(layer.name, layer.getClassName(), `activation "${activation}"`);
  }
}

/** Reads a serialized activation config: a name, or {className, config} in tfjs 4.x. */
function activationName(config: tf.serialization.ConfigDict): string {
  const activation = config['activation'];
  if (activation === undefined || activation === null) {
    return 'linear';
  }
  if (typeof activation === 'string') {
    return activation;
  }
  return String((activation as { className?: string }).className ?? activation);
}

/** Facts about the model graph that a converter may need beyond its own inputs. */
interface ConversionContext {
  /** Class names of the layers that consume this layer's output in the model. */
  consumerClasses(layer: tf.layers.Layer): string[];
  /** OnnxExportOptions.dropoutMasks. */
  dropoutMasks: boolean;
}

type Converter = (g: GraphBuilder, layer: tf.layers.Layer, inputs: Value[], outputShape: Array<number | null>, context: ConversionContext) => Value;

interface ConvolutionArgs {
  kernel: Float32Array;
  /** ONNX kernel shape [out channels, in channels / group, kh, kw]. */
  kernelShape: number[];
  group: number;
  bias: Float32Array | undefined;
  config: tf.serialization.ConfigDict;
}

function convolution(g: GraphBuilder, layer: tf.layers.Layer, input: Value, outputShape: Array<number | null>, args: ConvolutionArgs): Value {
  const { kernel, kernelShape, group, bias, config } = args;
  const x = g.inLayout(input, 'nchw');
  const strides = pair(config['strides'] ?? 1);
  const dilations = pair(config['dilationRate'] ?? 1);
  const kernelSize = kernelShape.slice(2);
  const pads = spatialPads(spatialShape(layer, input), kernelSize, strides, dilations, String(config['padding'] ?? 'valid'));
  const inputs = [x.name, g.floatConstant(`${layer.name}/kernel`, kernel, kernelShape)];
  if (bias !== undefined) {
    inputs.push(g.floatConstant(`${layer.name}/bias`, bias, [bias.length]));
  }
  return { name: g.node('Conv', inputs, layer.name, { kernel_shape: kernelSize, strides, dilations, pads, group }), shape: outputShape, layout: 'nchw' };
}

const convert2d: Converter = (g, layer, [input], outputShape) => {
  const config = layer.getConfig();
  channelsLast(layer, config);
  if ((config['groups'] as number | undefined ?? 1) !== 1) {
    throw new UnsupportedLayerError(layer.name, layer.getClassName(), 'groups other than 1');
  }
  const weights = layerWeights(layer);
  const kernel = requireWeight(layer, weights, 'kernel');
  const [kh, kw, cin, cout] = kernel.shape as [number, number, number, number];
  const onnxKernel = permute(kernel.data, kernel.shape, [3, 2, 0, 1]);
  const y = convolution(g, layer, input as Value, outputShape, {
    kernel: onnxKernel,
    kernelShape: [cout, cin, kh, kw],
    group: 1,
    bias: weights.get('bias')?.data,
    config,
  });
  return applyActivation(g, layer, y, activationName(config), `${layer.name}/activation`);
};

const convertDepthwise: Converter = (g, layer, [input], outputShape) => {
  const config = layer.getConfig();
  channelsLast(layer, config);
  const weights = layerWeights(layer);
  const kernel = requireWeight(layer, weights, 'depthwise_kernel');
  const [kh, kw, channels, multiplier] = kernel.shape as [number, number, number, number];
  // tfjs [kh, kw, C, m] -> ONNX [C * m, 1, kh, kw], output channel c * m + k as in TensorFlow.
  const onnxKernel = permute(kernel.data, kernel.shape, [2, 3, 0, 1]);
  const y = convolution(g, layer, input as Value, outputShape, {
    kernel: onnxKernel,
    kernelShape: [channels * multiplier, 1, kh, kw],
    group: channels,
    bias: weights.get('bias')?.data,
    config,
  });
  return applyActivation(g, layer, y, activationName(config), `${layer.name}/activation`);
};

const convertChannelwise: Converter = (g, layer, [input], outputShape) => {
  const config = layer.getConfig();
  const weights = layerWeights(layer);
  const kernel = requireWeight(layer, weights, 'kernel');
  const [kh, kw, , channels] = kernel.shape as [number, number, number, number];
  const onnxKernel = permute(kernel.data, kernel.shape, [3, 2, 0, 1]);
  return convolution(g, layer, input as Value, outputShape, {
    kernel: onnxKernel,
    kernelShape: [channels, 1, kh, kw],
    group: channels,
    bias: weights.get('bias')?.data,
    config: { strides: 1, dilationRate: 1, padding: config['padding'] ?? 'valid' },
  });
};

const convertBatchNorm: Converter = (g, layer, [input]) => {
  const x = input as Value;
  const config = layer.getConfig();
  const epsilon = Number(config['epsilon'] ?? 1e-3);
  const weights = layerWeights(layer);
  const mean = requireWeight(layer, weights, 'moving_mean').data;
  const variance = requireWeight(layer, weights, 'moving_variance').data;
  const channels = mean.length;
  const gamma = weights.get('gamma')?.data ?? new Float32Array(channels).fill(1);
  const beta = weights.get('beta')?.data ?? new Float32Array(channels);
  if (x.shape.length === 4 && x.layout === 'nchw') {
    const inputs = [
      x.name,
      g.floatConstant(`${layer.name}/gamma`, gamma, [channels]),
      g.floatConstant(`${layer.name}/beta`, beta, [channels]),
      g.floatConstant(`${layer.name}/moving_mean`, mean, [channels]),
      g.floatConstant(`${layer.name}/moving_variance`, variance, [channels]),
    ];
    return { ...x, name: g.node('BatchNormalization', inputs, layer.name, { epsilon: { float: epsilon } }) };
  }
  // Same arithmetic as FrozenBatchNormalization: x * a + b with a = gamma / sqrt(var + eps).
  const scale = gamma.map((gm, i) => gm / Math.sqrt((variance[i] as number) + epsilon));
  const offset = beta.map((b, i) => b - (mean[i] as number) * (scale[i] as number));
  return affine(g, x, scale, offset, layer.name);
};

const convertReLU: Converter = (g, layer, [input]) => {
  const maxValue = layer.getConfig()['maxValue'] as number | null | undefined;
  const x = input as Value;
  if (maxValue === null || maxValue === undefined) {
    return applyActivation(g, layer, x, 'relu', layer.name);
  }
  return { ...x, name: g.node('Clip', [x.name, g.floatConstant(`${layer.name}/min`, [0], []), g.floatConstant(`${layer.name}/max`, [maxValue], [])], layer.name) };
};

const convertActivation: Converter = (g, layer, [input]) => applyActivation(g, layer, input as Value, activationName(layer.getConfig()), layer.name);

const convertZeroPadding: Converter = (g, layer, [input], outputShape, context) => {
  const x = g.inLayout(input as Value, 'nchw');
  const [[top, bottom], [left, right]] = layer.getConfig()['padding'] as [[number, number], [number, number]];
  const consumers = context.consumerClasses(layer);
  // ONNX Runtime 1.31's PadFusion merges a zero Pad into a following MaxPool,
  // whose pads act as -infinity, which changes windows of negative values
  // (ResNetV2's pool1 after its un-rectified stem). The pooling adds the zeros instead.
  if (consumers.length > 0 && consumers.every((c) => c === 'MaxPooling2D')) {
    return { ...x, shape: outputShape, deferredZeroPadding: { top, bottom, left, right, sourceShape: x.shape } };
  }
  const pads = g.int64Constant(`${layer.name}/pads`, [0, 0, top, left, 0, 0, bottom, right]);
  return { name: g.node('Pad', [x.name, pads], layer.name, { mode: 'constant' }), shape: outputShape, layout: 'nchw' };
};

/**
 * Emits max pooling of a zero-padded value without a Pad node. MaxPool runs
 * over the unpadded source with the zero padding added to its pads, which
 * ONNX treats as -infinity. A Max with a constant then restores the zeros: the
 * constant is 0 where the window covers a zero-padded pixel and -FLT_MAX
 * elsewhere, so the result equals pooling the padded tensor.
 */
function maxPoolAfterZeroPadding(g: GraphBuilder, layer: tf.layers.Layer, x: Value, outputShape: Array<number | null>, kernel: number[], strides: number[], ownPads: number[]): Value {
  const zero = x.deferredZeroPadding as NonNullable<Value['deferredZeroPadding']>;
  const [, sourceHeight, sourceWidth] = zero.sourceShape as [null, number, number];
  const [, outHeight, outWidth] = outputShape as [null, number, number];
  const [ownTop, ownLeft, ownBottom, ownRight] = ownPads as [number, number, number, number];
  const pads = [zero.top + ownTop, zero.left + ownLeft, zero.bottom + ownBottom, zero.right + ownRight];
  const pooled = g.node('MaxPool', [x.name], `${layer.name}/unpadded`, { kernel_shape: kernel, strides, pads });

  // Along one axis: does output window i cover a zero-padded position, that is
  // one inside the padded extent [0, before + source + after) but outside the source?
  const coversZeros = (i: number, axis: { stride: number; size: number; own: number; before: number; source: number; after: number }): boolean => {
    const first = i * axis.stride - axis.own;
    for (let p = first; p < first + axis.size; p++) {
      const inPadded = p >= 0 && p < axis.before + axis.source + axis.after;
      if (inPadded && (p < axis.before || p >= axis.before + axis.source)) {
        return true;
      }
    }
    return false;
  };
  const rowAxis = { stride: strides[0] as number, size: kernel[0] as number, own: ownTop, before: zero.top, source: sourceHeight, after: zero.bottom };
  const columnAxis = { stride: strides[1] as number, size: kernel[1] as number, own: ownLeft, before: zero.left, source: sourceWidth, after: zero.right };
  const rows = Array.from({ length: outHeight }, (_, i) => coversZeros(i, rowAxis));
  const columns = Array.from({ length: outWidth }, (_, j) => coversZeros(j, columnAxis));
  const floor = new Float32Array(outHeight * outWidth);
  for (let i = 0; i < outHeight; i++) {
    for (let j = 0; j < outWidth; j++) {
      floor[i * outWidth + j] = rows[i] === true || columns[j] === true ? 0 : -3.4028234663852886e38;
    }
  }
  const floorName = g.floatConstant(`${layer.name}/zero_padding_floor`, floor, [1, 1, outHeight, outWidth]);
  return { name: g.node('Max', [pooled, floorName], layer.name), shape: outputShape, layout: 'nchw' };
}

function pooling(op: 'MaxPool' | 'AveragePool'): Converter {
  return (g, layer, [input], outputShape) => {
    const config = layer.getConfig();
    channelsLast(layer, config);
    const x = g.inLayout(input as Value, 'nchw');
    const kernel = pair(config['poolSize']);
    const strides = pair(config['strides'] ?? config['poolSize']);
    const pads = spatialPads(spatialShape(layer, x), kernel, strides, [1, 1], String(config['padding'] ?? 'valid'));
    if (x.deferredZeroPadding !== undefined) {
      if (op !== 'MaxPool') {
        throw new Error(`ONNX export: layer "${layer.name}" received deferred zero padding, which only max pooling handles.`);
      }
      return maxPoolAfterZeroPadding(g, layer, x, outputShape, kernel, strides, pads);
    }
    // TensorFlow averages over the window's pixels inside the image only.
    const extra: Record<string, AttributeValue> = op === 'AveragePool' ? { count_include_pad: 0 } : {};
    return { name: g.node(op, [x.name], layer.name, { kernel_shape: kernel, strides, pads, ...extra }), shape: outputShape, layout: 'nchw' };
  };
}

function globalPooling(op: 'GlobalAveragePool' | 'GlobalMaxPool'): Converter {
  return (g, layer, [input], outputShape) => {
    const config = layer.getConfig();
    channelsLast(layer, config);
    const source = input as Value;
    if (source.layout === 'nhwc' && config['keepDims'] !== true) {
      // A channels-last map (ConvNeXt's last layer normalisation) reduces over H and W without a transpose.
      const reduce = op === 'GlobalAveragePool' ? 'ReduceMean' : 'ReduceMax';
      return { name: g.node(reduce, [source.name], layer.name, { axes: [1, 2], keepdims: 0 }), shape: outputShape, layout: 'nhwc' };
    }
    const x = g.inLayout(source, 'nchw');
    const pooled = g.node(op, [x.name], `${layer.name}/pooled`);
    if (config['keepDims'] === true) {
      return { name: pooled, shape: outputShape, layout: 'nchw' };
    }
    return { name: g.node('Flatten', [pooled], layer.name, { axis: 1 }), shape: outputShape, layout: 'nhwc' };
  };
}

function elementwise(op: 'Add' | 'Mul' | 'Max' | 'Min'): Converter {
  return (g, layer, inputs, outputShape) => {
    const first = inputs[0] as Value;
    // Rank-4 operands share the first one's layout; lower-rank ones broadcast as they are.
    const operands = inputs.map((v) => (v.shape.length === 4 ? g.inLayout(v, first.shape.length === 4 ? first.layout : 'nhwc') : v));
    let name = (operands[0] as Value).name;
    const layout = operands.find((v) => v.shape.length === 4)?.layout ?? 'nhwc';
    operands.slice(1).forEach((operand, i) => {
      name = g.node(op, [name, operand.name], i === operands.length - 2 ? layer.name : `${layer.name}/partial`);
    });
    return { name, shape: outputShape, layout };
  };
}

const convertConcatenate: Converter = (g, layer, inputs, outputShape) => {
  const rank = outputShape.length;
  let axis = Number(layer.getConfig()['axis'] ?? -1);
  axis = axis < 0 ? rank + axis : axis;
  const layout: Layout = rank === 4 ? (inputs[0] as Value).layout : 'nhwc';
  const operands = inputs.map((v) => g.inLayout(v, layout));
  const physicalAxis = rank === 4 && layout === 'nchw' ? ([0, 2, 3, 1][axis] as number) : axis;
  return { name: g.node('Concat', operands.map((v) => v.name), layer.name, { axis: physicalAxis }), shape: outputShape, layout };
};

const convertDense: Converter = (g, layer, [input], outputShape) => {
  const config = layer.getConfig();
  const weights = layerWeights(layer);
  const kernel = requireWeight(layer, weights, 'kernel');
  const bias = weights.get('bias');
  const x = g.inLayout(input as Value, 'nhwc');
  const kernelName = g.floatConstant(`${layer.name}/kernel`, kernel.data, kernel.shape);
  let name: string;
  if (x.shape.length === 2) {
    const inputs = [x.name, kernelName];
    if (bias !== undefined) {
      inputs.push(g.floatConstant(`${layer.name}/bias`, bias.data, bias.shape));
    }
    name = g.node('Gemm', inputs, `${layer.name}/linear`);
  } else {
    name = g.node('MatMul', [x.name, kernelName], `${layer.name}/matmul`);
    if (bias !== undefined) {
      name = g.node('Add', [name, g.floatConstant(`${layer.name}/bias`, bias.data, bias.shape)], `${layer.name}/linear`);
    }
  }
  return applyActivation(g, layer, { name, shape: outputShape, layout: 'nhwc' }, activationName(config), layer.name);
};

const identity: Converter = (_g, _layer, [input]) => input as Value;

/**
 * Dropout: the identity (inference), or with OnnxExportOptions.dropoutMasks a
 * multiplication by a mask fed as a graph input. A noise shape that keeps
 * only the batch dimension ([null, 1, 1, 1]) broadcasts in either layout.
 * Any other mask is NHWC, so the input is brought to NHWC first.
 */
const convertDropout: Converter = (g, layer, [input], outputShape, context) => {
  const config = layer.getConfig();
  const rate = Number(config['rate'] ?? 0);
  if (!context.dropoutMasks || !(rate > 0)) {
    return input as Value;
  }
  const noise = config['noiseShape'] as Array<number | null> | null | undefined;
  const resolved = outputShape.map((size, axis) => (axis === 0 ? null : (noise?.[axis] ?? size)));
  if (resolved.some((size, axis) => axis > 0 && (size === null || size < 1))) {
    throw new UnsupportedLayerError(layer.name, layer.getClassName(), `dropout mask of unknown shape ${JSON.stringify(resolved)}`);
  }
  const batchOnly = resolved.every((size, axis) => axis === 0 || size === 1);
  const x = batchOnly ? (input as Value) : g.inLayout(input as Value, 'nhwc');
  const name = g.uniqueName(`${layer.name}/mask`);
  g.extraInputs.push({ name, layerName: layer.name, rate, shape: resolved });
  return { ...x, name: g.node('Mul', [x.name, name], layer.name), shape: outputShape };
};

const convertFlatten: Converter = (g, layer, [input], outputShape) => {
  const x = g.inLayout(input as Value, 'nhwc');
  return { name: g.node('Flatten', [x.name], layer.name, { axis: 1 }), shape: outputShape, layout: 'nhwc' };
};

const convertReshape: Converter = (g, layer, [input], outputShape) => {
  const x = input as Value;
  const target = outputShape.slice(1).map((d) => d ?? -1);
  // [n, C] -> [n, 1, 1, C] (squeeze-and-excitation) is the same memory as NCHW [n, C, 1, 1], so it stays NCHW.
  if (x.shape.length === 2 && target.length === 3 && target[0] === 1 && target[1] === 1) {
    const shape = g.int64Constant(`${layer.name}/shape`, [0, target[2] as number, 1, 1]);
    return { name: g.node('Reshape', [x.name, shape], layer.name), shape: outputShape, layout: 'nchw' };
  }
  const source = g.inLayout(x, 'nhwc');
  const shape = g.int64Constant(`${layer.name}/shape`, [0, ...target]);
  return { name: g.node('Reshape', [source.name, shape], layer.name), shape: outputShape, layout: 'nhwc' };
};

const convertSoftmax: Converter = (g, layer, [input]) => {
  const axis = layer.getConfig()['axis'];
  if (axis !== undefined && axis !== -1 && !(Array.isArray(axis) && axis.length === 1 && axis[0] === -1)) {
    throw new UnsupportedLayerError(layer.name, layer.getClassName(), `softmax over axis ${JSON.stringify(axis)}`);
  }
  return applyActivation(g, layer, input as Value, 'softmax', layer.name);
};

const convertRescaling: Converter = (g, layer, [input]) => {
  const x = input as Value;
  const config = layer.getConfig();
  const channels = lastDim(layer, x);
  return affine(g, x, perChannel(config['scale'] as number | number[], channels), perChannel((config['offset'] as number | number[] | undefined) ?? 0, channels), layer.name);
};

const convertNormalization: Converter = (g, layer, [input]) => {
  const x = input as Value;
  const config = layer.getConfig();
  const weights = layerWeights(layer);
  const mean = (config['mean'] as number[] | null) ?? Array.from(requireWeight(layer, weights, 'mean').data);
  const variance = (config['variance'] as number[] | null) ?? Array.from(requireWeight(layer, weights, 'variance').data);
  // (x - mean) / max(sqrt(variance), 1e-7), as lib/models/layers.ts Normalization computes it.
  const inverse = Float32Array.from(variance, (v) => 1 / Math.max(Math.sqrt(v), 1e-7));
  const channels = inverse.length;
  const centred = g.node('Sub', [x.name, g.floatConstant(`${layer.name}/mean`, mean, channelDims(x, channels))], `${layer.name}/centred`);
  return { ...x, name: g.node('Mul', [centred, g.floatConstant(`${layer.name}/inverse_std`, inverse, channelDims(x, channels))], layer.name) };
};

const convertLayerScale: Converter = (g, layer, [input]) => {
  const x = input as Value;
  const gamma = requireWeight(layer, layerWeights(layer), 'gamma').data;
  return { ...x, name: g.node('Mul', [x.name, g.floatConstant(`${layer.name}/gamma`, gamma, channelDims(x, gamma.length))], layer.name) };
};

const convertLayerNormalization: Converter = (g, layer, [input]) => {
  const config = layer.getConfig();
  const axis = config['axis'];
  const axes = Array.isArray(axis) ? (axis as number[]) : [axis as number];
  const rank = (input as Value).shape.length;
  if (axes.length !== 1 || !(axes[0] === -1 || axes[0] === rank - 1)) {
    throw new UnsupportedLayerError(layer.name, layer.getClassName(), `normalisation over axes ${JSON.stringify(axis)}; only the last axis is supported`);
  }
  const x = g.inLayout(input as Value, 'nhwc');
  const channels = lastDim(layer, x);
  const weights = layerWeights(layer);
  const gamma = weights.get('gamma')?.data ?? new Float32Array(channels).fill(1);
  const beta = weights.get('beta')?.data ?? new Float32Array(channels);
  const inputs = [x.name, g.floatConstant(`${layer.name}/gamma`, gamma, [channels]), g.floatConstant(`${layer.name}/beta`, beta, [channels])];
  return { ...x, name: g.node('LayerNormalization', inputs, layer.name, { axis: -1, epsilon: { float: Number(config['epsilon'] ?? 1e-3) } }) };
};

const CONVERTERS: Record<string, Converter> = {
  Conv2D: convert2d,
  DepthwiseConv2D: convertDepthwise,
  ChannelwiseConv2D: convertChannelwise,
  BatchNormalization: convertBatchNorm,
  ReLU: convertReLU,
  Activation: convertActivation,
  ZeroPadding2D: convertZeroPadding,
  MaxPooling2D: pooling('MaxPool'),
  AveragePooling2D: pooling('AveragePool'),
  GlobalAveragePooling2D: globalPooling('GlobalAveragePool'),
  GlobalMaxPooling2D: globalPooling('GlobalMaxPool'),
  Add: elementwise('Add'),
  Multiply: elementwise('Mul'),
  Maximum: elementwise('Max'),
  Minimum: elementwise('Min'),
  Concatenate: convertConcatenate,
  Dense: convertDense,
  Dropout: convertDropout,
  SpatialDropout1D: identity,
  Flatten: convertFlatten,
  Reshape: convertReshape,
  Softmax: convertSoftmax,
  Rescaling: convertRescaling,
  Normalization: convertNormalization,
  LayerScale: convertLayerScale,
  LayerNormalization: convertLayerNormalization,
};

const SUPPORTED_CLASSES = ['InputLayer', ...Object.keys(CONVERTERS)].sort();

/** Symbolic tensors of the model's own call of a layer (a layer may also be called in other models). */
export function modelNode(model: tf.LayersModel, layer: tf.layers.Layer): { inputs: tf.SymbolicTensor[]; outputs: tf.SymbolicTensor[] } {
  const containerNodes = (model as unknown as { containerNodes: Set<string> }).containerNodes;
  const nodes = (layer as unknown as { inboundNodes: Array<{ inputTensors: tf.SymbolicTensor[]; outputTensors: tf.SymbolicTensor[] }> }).inboundNodes;
  const index = nodes.findIndex((_, i) => containerNodes.has(`${layer.name}_ib-${i}`));
  const node = nodes[index];
  if (node === undefined) {
    throw new Error(`ONNX export: layer "${layer.name}" is not called in model "${model.name}".`);
  }
  return { inputs: node.inputTensors, outputs: node.outputTensors };
}

function conversionContext(model: tf.LayersModel, options: OnnxExportOptions): ConversionContext {
  const consumers = new Map<string, string[]>();
  for (const layer of model.layers) {
    if (layer.getClassName() === 'InputLayer') {
      continue;
    }
    for (const input of modelNode(model, layer).inputs) {
      const source = input.sourceLayer.name;
      consumers.set(source, [...(consumers.get(source) ?? []), layer.getClassName()]);
    }
  }
  // A model output is consumed outside the graph, so it is never deferred.
  for (const output of model.outputs) {
    const source = output.sourceLayer.name;
    consumers.set(source, [...(consumers.get(source) ?? []), 'output']);
  }
  return { consumerClasses: (layer) => consumers.get(layer.name) ?? [], dropoutMasks: options.dropoutMasks === true };
}

/** Returns the name of the layer that produced a symbolic tensor ("input_image", "emotion_probabilities"). */
function tensorName(tensor: tf.SymbolicTensor): string {
  return tensor.sourceLayer?.name ?? tensor.name.replace(/\/.*$/, '');
}

function valueInfo(name: string, shape: Array<number | null>): onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: FLOAT,
        shape: { dim: shape.map((d, i) => (d == null ? { dimParam: i === 0 ? 'batch' : `dim_${i}` } : { dimValue: d })) },
      },
    },
  };
}

/**
 * Converts a tfjs layers model to an ONNX model (serialized ModelProto).
 * The graph's inputs and outputs keep the tfjs model's names, NHWC layout and
 * a variable batch dimension. Throws UnsupportedLayerError for a layer class
 * outside SUPPORTED_CLASSES.
 */
export function exportOnnx(model: tf.LayersModel, options: OnnxExportOptions = {}): Uint8Array {
  return exportOnnxGraph(model, options).bytes;
}

/** exportOnnx, also returning the dropout mask inputs that OnnxExportOptions.dropoutMasks added, in layer order. */
export function exportOnnxGraph(model: tf.LayersModel, options: OnnxExportOptions = {}): { bytes: Uint8Array; masks: MaskInput[] } {
  const g = new GraphBuilder();
  const values = new Map<number, Value>();

  const graphInputs = model.inputs.map((input) => {
    const name = g.uniqueName(tensorName(input));
    values.set(input.id, { name, shape: [...input.shape], layout: 'nhwc' });
    return valueInfo(name, input.shape);
  });

  const context = conversionContext(model, options);
  // Reserved first, so that the graph outputs keep the names of the tfjs outputs.
  const outputNames = model.outputs.map((output) => g.uniqueName(tensorName(output)));

  for (const layer of model.layers) {
    const className = layer.getClassName();
    if (className === 'InputLayer') {
      continue;
    }
    const converter = CONVERTERS[className];
    if (converter === undefined) {
      throw new UnsupportedLayerError(layer.name, className);
    }
    const { inputs, outputs } = modelNode(model, layer);
    if (outputs.length !== 1) {
      throw new UnsupportedLayerError(layer.name, className, `${outputs.length} outputs`);
    }
    const inputValues = inputs.map((t) => {
      const v = values.get(t.id);
      if (v === undefined) {
        throw new Error(`ONNX export: input "${t.name}" of layer "${layer.name}" was not computed before it; the layer order is not topological.`);
      }
      return v;
    });
    const output = outputs[0] as tf.SymbolicTensor;
    values.set(output.id, converter(g, layer, inputValues, [...output.shape], context));
  }

  const graphOutputs = model.outputs.map((output, i) => {
    const value = values.get(output.id);
    if (value === undefined) {
      throw new Error(`ONNX export: output "${output.name}" of model "${model.name}" was never computed.`);
    }
    const source = g.inLayout(value, 'nhwc');
    const name = outputNames[i] as string;
    g.node('Identity', [source.name], name, {}, name);
    return valueInfo(name, output.shape);
  });

  const modelProto = onnx.ModelProto.create({
    irVersion: ONNX_IR_VERSION,
    opsetImport: [{ domain: '', version: ONNX_OPSET }],
    producerName: 'fer-toolkit',
    producerVersion: `tfjs ${tf.version.tfjs}`,
    graph: {
      name: options.graphName ?? model.name,
      node: g.nodes,
      initializer: g.initializers,
      input: [...graphInputs, ...g.extraInputs.map((mask) => valueInfo(mask.name, mask.shape))],
      output: graphOutputs,
    },
    metadataProps: Object.entries(options.metadata ?? {}).map(([key, value]) => ({ key, value })),
  });
  return { bytes: onnx.ModelProto.encode(modelProto).finish(), masks: [...g.extraInputs] };
}

/** Names of the layer classes exportOnnx converts. */
export function supportedLayerClasses(): string[] {
  return [...SUPPORTED_CLASSES];
}
