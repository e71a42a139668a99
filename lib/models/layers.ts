/**
 * Layers that replace tfjs-layers classes where the training behaviour of
 * transfer learning needs something else. Each reports the standard class
 * name and config, so a saved model.json loads in plain TensorFlow.js (a
 * browser included) as ordinary BatchNormalization, ReLU, Dropout,
 * Rescaling and LayerNormalization layers, which compute the same thing at
 * inference.
 *
 * Normalization, LayerScale and ChannelwiseConv2D, which EfficientNet and
 * ConvNeXt need, have no tfjs-layers counterpart. They are registered under
 * their own class names, so a model with them loads only in a process that
 * imports this module.
 */
import * as tf from '@tensorflow/tfjs';

import { Rng } from '../util/rng';
import { relu, relu6 } from './fast_ops';

export type Kwargs = Record<string, unknown>;

/** Returns the first tensor of a layer's inputs. */
export function single(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
  return Array.isArray(inputs) ? (inputs[0] as tf.Tensor) : inputs;
}

export interface FrozenBatchNormalizationArgs {
  name: string;
  epsilon?: number;
  momentum?: number;
}

/**
 * Batch normalization that always uses its moving statistics and never
 * updates them or its scale and offset.
 *
 * Fine-tuning a pretrained CNN keeps batch-norm layers in inference mode, as
 * Keras does for a BatchNormalization layer with trainable=False. tfjs-layers'
 * own layer ignores `trainable` and switches to batch statistics whenever
 * training=true, so it cannot be used for that. The layer is computed as
 * x * a + b with a = gamma / sqrt(var + eps), b = beta - mean * a, whose
 * gradient is one multiply.
 */
export class FrozenBatchNormalization extends tf.layers.Layer {
  static className = 'BatchNormalization';

  readonly epsilon: number;
  /** The convolution this layer is folded into in training mode (lib/models/fold.ts), if any. */
  foldedInto: string | undefined;
  private readonly momentum: number;
  private gamma!: tf.LayerVariable;
  private beta!: tf.LayerVariable;
  private movingMean!: tf.LayerVariable;
  private movingVariance!: tf.LayerVariable;

  constructor(args: FrozenBatchNormalizationArgs) {
    super({ name: args.name, trainable: false });
    this.epsilon = args.epsilon ?? 1e-3;
    this.momentum = args.momentum ?? 0.99;
    this.supportsMasking = true;
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    const channels = shape[shape.length - 1];
    if (channels == null) {
      throw new Error(`${this.name}: the channel dimension of the input must be known, got shape ${JSON.stringify(shape)}.`);
    }
    this.gamma = this.addWeight('gamma', [channels], 'float32', tf.initializers.ones(), undefined, false);
    this.beta = this.addWeight('beta', [channels], 'float32', tf.initializers.zeros(), undefined, false);
    this.movingMean = this.addWeight('moving_mean', [channels], 'float32', tf.initializers.zeros(), undefined, false);
    this.movingVariance = this.addWeight('moving_variance', [channels], 'float32', tf.initializers.ones(), undefined, false);
    this.built = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const x = single(inputs);
      const scale = tf.mul(this.gamma.read(), tf.rsqrt(tf.add(this.movingVariance.read(), this.epsilon)));
      const offset = tf.sub(this.beta.read(), tf.mul(this.movingMean.read(), scale));
      return tf.add(tf.mul(x, scale), offset);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      axis: -1,
      momentum: this.momentum,
      epsilon: this.epsilon,
      center: true,
      scale: true,
      betaInitializer: { className: 'Zeros', config: {} },
      gammaInitializer: { className: 'Ones', config: {} },
      movingMeanInitializer: { className: 'Zeros', config: {} },
      movingVarianceInitializer: { className: 'Ones', config: {} },
      betaRegularizer: null,
      gammaRegularizer: null,
      betaConstraint: null,
      gammaConstraint: null,
    };
  }
}

export interface LastAxisLayerNormalizationArgs {
  name: string;
  epsilon?: number;
}

/**
 * Layer normalization over the last axis with gamma and beta, as Keras's
 * LayerNormalization(axis=-1) in ConvNeXt. tfjs-layers' own layer tiles its
 * mean, variance, gamma and beta to the input's full shape before calling
 * batchNorm, and tfjs's gradient of Tile adds one slice per repeated row. A
 * fine-tuning step of ConvNeXtTiny at 64 px and batch 8 ran about 44,000
 * Slice and 44,000 Add kernels for it. This layer computes
 * y = (x - mean) / sqrt(var + eps) * gamma + beta with broadcasting and a
 * closed-form gradient of about ten full-size kernels.
 */
export class LastAxisLayerNormalization extends tf.layers.Layer {
  static className = 'LayerNormalization';

  readonly epsilon: number;
  private gamma!: tf.LayerVariable;
  private beta!: tf.LayerVariable;

  constructor(args: LastAxisLayerNormalizationArgs) {
    super({ name: args.name });
    this.epsilon = args.epsilon ?? 1e-3;
    this.supportsMasking = true;
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    const channels = shape[shape.length - 1];
    if (channels == null) {
      throw new Error(`${this.name}: the last dimension of the input must be known, got shape ${JSON.stringify(shape)}.`);
    }
    this.gamma = this.addWeight('gamma', [channels], 'float32', tf.initializers.ones());
    this.beta = this.addWeight('beta', [channels], 'float32', tf.initializers.zeros());
    this.built = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => layerNormLastAxis(single(inputs), this.gamma.read(), this.beta.read(), this.epsilon));
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      axis: -1,
      epsilon: this.epsilon,
      center: true,
      scale: true,
      betaInitializer: { className: 'Zeros', config: {} },
      gammaInitializer: { className: 'Ones', config: {} },
      betaRegularizer: null,
      gammaRegularizer: null,
    };
  }
}

/**
 * Layer normalization over the last axis with its gradient written out:
 * with n channels, x^ = (x - mean) * r, r = 1 / sqrt(var + eps) and
 * g = dy * gamma, dx = r * (g - mean(g) - x^ * mean(g * x^)), dgamma =
 * sum(dy * x^) and dbeta = sum(dy) over all axes but the last.
 */
export function layerNormLastAxis(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: number): tf.Tensor {
  const axis = x.rank - 1;
  const reduceAxes = Array.from({ length: axis }, (_, i) => i);
  const norm = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [input, scale, offset, save] = args as [tf.Tensor, tf.Tensor, tf.Tensor, tf.GradSaveFunc];
    const centered = tf.sub(input, tf.mean(input, axis, true));
    const inverseStd = tf.rsqrt(tf.add(tf.mean(tf.square(centered), axis, true), epsilon));
    const normalized = tf.mul(centered, inverseStd);
    save([normalized, inverseStd, scale]);
    return {
      value: tf.add(tf.mul(normalized, scale), offset),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xHat, r, g] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
        const scaled = tf.mul(dy, g);
        const dx = tf.mul(r, tf.sub(tf.sub(scaled, tf.mean(scaled, axis, true)), tf.mul(xHat, tf.mean(tf.mul(scaled, xHat), axis, true))));
        return [dx, tf.sum(tf.mul(dy, xHat), reduceAxes), tf.sum(dy, reduceAxes)];
      },
    };
  });
  return norm(x, gamma, beta) as tf.Tensor;
}

export interface ReLUArgs {
  name: string;
  /** Upper bound; 6 gives ReLU6. */
  maxValue?: number;
}

/** ReLU or ReLU6 with a one-kernel gradient on tfjs-node (see fast_ops). */
export class FastReLU extends tf.layers.Layer {
  static className = 'ReLU';

  readonly maxValue: number | undefined;

  constructor(args: ReLUArgs) {
    super({ name: args.name });
    this.maxValue = args.maxValue;
    this.supportsMasking = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    const x = single(inputs);
    if (this.maxValue === undefined) {
      return relu(x);
    }
    if (this.maxValue === 6) {
      return relu6(x);
    }
    return tf.clipByValue(x, 0, this.maxValue);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), maxValue: this.maxValue ?? null };
  }
}

/**
 * Source of dropout masks. The trainer seeds it once per run; each training
 * call of a SeededDropout layer draws the next seed from it, so masks differ
 * between steps but repeat between runs with the same seed.
 */
let dropoutRng = new Rng(0, 0x5eed);

export function seedDropout(seed: number, ...stream: number[]): void {
  dropoutRng = new Rng(seed, 0x5eed, ...stream);
}

/**
 * Draws the multiplier that the next SeededDropout call would apply: 0 or
 * 1 / (1 - rate) in `shape`, from the same seed stream and with
 * tf.dropout's arithmetic. A graph that multiplies by it (an ONNX export
 * with dropout masks) therefore drops what the tfjs layer would have dropped.
 */
export function nextDropoutMultiplier(rate: number, shape: number[]): tf.Tensor {
  const keep = 1 - rate;
  return tf.tidy(() => tf.div(tf.floor(tf.add(tf.randomUniform(shape, 0, 1, 'float32', dropoutRng.nextUint32()), keep)), keep));
}

export interface SeededDropoutArgs {
  name: string;
  rate: number;
  /**
   * Shape of the keep/drop mask, broadcast over the input; null takes the
   * input's size in that dimension. [null, 1, 1, 1] drops whole samples, as
   * EfficientNet's stochastic depth does. Omitted: one flag per element.
   */
  noiseShape?: Array<number | null>;
}

/**
 * Dropout whose mask comes from the run's seed. tfjs-layers' Dropout with a
 * fixed `seed` draws the same mask at every step, and without one it cannot
 * be reproduced.
 */
export class SeededDropout extends tf.layers.Layer {
  static className = 'Dropout';

  readonly rate: number;
  readonly noiseShape: Array<number | null> | undefined;

  constructor(args: SeededDropoutArgs) {
    super({ name: args.name });
    if (!(args.rate >= 0 && args.rate < 1)) {
      throw new Error(`${args.name}: invalid dropout rate ${args.rate}; expected 0 <= rate < 1.`);
    }
    this.rate = args.rate;
    this.noiseShape = args.noiseShape === undefined ? undefined : [...args.noiseShape];
    this.supportsMasking = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor {
    const x = single(inputs);
    if (kwargs['training'] !== true || this.rate === 0) {
      return x;
    }
    const noiseShape = this.noiseShape?.map((size, axis) => size ?? (x.shape[axis] as number));
    if (noiseShape !== undefined && noiseShape.length !== x.rank) {
      throw new Error(`${this.name}: noiseShape [${noiseShape.join(', ')}] has rank ${noiseShape.length}, but the input has rank ${x.rank}.`);
    }
    return tf.dropout(x, this.rate, noiseShape, dropoutRng.nextUint32());
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), rate: this.rate, noiseShape: this.noiseShape ?? null, seed: null };
  }
}

export interface ChannelRescalingArgs {
  name: string;
  /** One factor for all channels, or one per channel (the last axis). */
  scale: number | number[];
  offset?: number | number[];
}

/**
 * Keras's Rescaling layer: x * scale + offset, with a scale and offset per
 * channel where given as arrays. tfjs-layers' Rescaling takes only numbers in
 * its type, although its computation broadcasts arrays the same way, so the
 * layer reports that class name and a saved model loads in plain TensorFlow.js.
 */
export class ChannelRescaling extends tf.layers.Layer {
  static className = 'Rescaling';

  readonly scale: number | number[];
  readonly offset: number | number[];

  constructor(args: ChannelRescalingArgs) {
    super({ name: args.name });
    this.scale = Array.isArray(args.scale) ? [...args.scale] : args.scale;
    const offset = args.offset ?? 0;
    this.offset = Array.isArray(offset) ? [...offset] : offset;
    this.supportsMasking = true;
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const channels = lastDimension(this.name, inputShape);
    for (const [label, value] of [['scale', this.scale], ['offset', this.offset]] as const) {
      if (Array.isArray(value) && value.length !== channels) {
        throw new Error(`${this.name}: ${label} has ${value.length} values but the input has ${channels} channels.`);
      }
    }
    this.built = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const x = tf.cast(single(inputs), 'float32');
      return tf.add(tf.mul(x, this.scale), this.offset);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), scale: this.scale, offset: this.offset };
  }
}

/** Size of the last axis of a layer's input, which must be known. */
function lastDimension(layerName: string, inputShape: tf.Shape | tf.Shape[]): number {
  const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
  const last = shape[shape.length - 1];
  if (last == null) {
    throw new Error(`${layerName}: the last dimension of the input must be known, got shape ${JSON.stringify(shape)}.`);
  }
  return last;
}

export interface NormalizationArgs {
  name: string;
  /**
   * Fixed per-channel mean and variance. When given, the layer has no weights
   * (Keras's Normalization(mean=..., variance=...)). When omitted, the layer
   * has the non-trainable weights mean, variance and count of an adaptable
   * Keras Normalization, initialised to `initialMean` and `initialVariance`.
   */
  mean?: number[] | null;
  variance?: number[] | null;
  /** Initial values of the mean and variance weights; Keras uses 0 and 1. */
  initialMean?: number[] | null;
  initialVariance?: number[] | null;
}

/**
 * Keras's Normalization layer over the last axis (keras/src/layers/
 * preprocessing/normalization.py, Keras 3.15): (x - mean) / max(sqrt(variance), 1e-7).
 * tfjs-layers has no such layer, so this class is registered under Keras's
 * name for tf.loadLayersModel in processes that import this module. Adapting
 * to data is not supported: the statistics come from weights or arguments.
 */
export class Normalization extends tf.layers.Layer {
  static className = 'Normalization';

  private readonly fixedMean: number[] | undefined;
  private readonly fixedVariance: number[] | undefined;
  private readonly initialMean: number[] | undefined;
  private readonly initialVariance: number[] | undefined;
  private meanWeight: tf.LayerVariable | undefined;
  private varianceWeight: tf.LayerVariable | undefined;

  constructor(args: NormalizationArgs) {
    super({ name: args.name, trainable: false });
    // A saved config stores null for absent values, so null counts as omitted.
    if ((args.mean == null) !== (args.variance == null)) {
      throw new Error(`${args.name}: set both mean and variance, or neither to keep them as weights.`);
    }
    this.fixedMean = args.mean == null ? undefined : [...args.mean];
    this.fixedVariance = args.variance == null ? undefined : [...args.variance];
    this.initialMean = args.initialMean == null ? undefined : [...args.initialMean];
    this.initialVariance = args.initialVariance == null ? undefined : [...args.initialVariance];
    this.supportsMasking = true;
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const channels = lastDimension(this.name, inputShape);
    const checks: Array<[string, number[] | undefined]> = [
      ['mean', this.fixedMean],
      ['variance', this.fixedVariance],
      ['initialMean', this.initialMean],
      ['initialVariance', this.initialVariance],
    ];
    for (const [label, values] of checks) {
      if (values !== undefined && values.length !== channels) {
        throw new Error(`${this.name}: ${label} has ${values.length} values but the input has ${channels} channels.`);
      }
    }
    if (this.fixedMean === undefined) {
      this.meanWeight = this.addWeight('mean', [channels], 'float32', tf.initializers.zeros(), undefined, false);
      this.varianceWeight = this.addWeight('variance', [channels], 'float32', tf.initializers.ones(), undefined, false);
      // Keras counts the samples seen by adapt() in an int64 scalar. TensorFlow.js
      // has no int64, and the value is never read here, so int32 keeps the name and shape.
      this.addWeight('count', [], 'int32', tf.initializers.zeros(), undefined, false);
      // tf.initializers.constant takes a single number, so per-channel initial values are written after creation.
      const { meanWeight, varianceWeight, initialMean, initialVariance } = this;
      tf.tidy(() => {
        if (initialMean !== undefined) {
          meanWeight.write(tf.tensor1d(initialMean));
        }
        if (initialVariance !== undefined) {
          varianceWeight.write(tf.tensor1d(initialVariance));
        }
      });
    }
    this.built = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const x = tf.cast(single(inputs), 'float32');
      const mean = this.meanWeight?.read() ?? tf.tensor1d(this.fixedMean as number[]);
      const variance = this.varianceWeight?.read() ?? tf.tensor1d(this.fixedVariance as number[]);
      return tf.div(tf.sub(x, mean), tf.maximum(tf.sqrt(variance), 1e-7));
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      axis: [-1],
      invert: false,
      mean: this.fixedMean ?? null,
      variance: this.fixedVariance ?? null,
    };
  }
}
tf.serialization.registerClass(Normalization);

export interface LayerScaleArgs {
  name: string;
  /** Initial value of every scale factor; ConvNeXt uses 1e-6. */
  initValues: number;
  projectionDim: number;
}

/**
 * ConvNeXt's LayerScale (keras/src/applications/convnext.py, Keras 3.15):
 * x * gamma with one trainable factor per channel. The weight is named
 * "gamma" after the Keras attribute, as lib/models/h5.ts names it.
 * NOTE: Keras 3.15 creates the variable without a name, so its own files
 * call it "variable"; a loader must map that name to "gamma".
 * Registered under Keras's class name for tf.loadLayersModel.
 */
export class LayerScale extends tf.layers.Layer {
  static className = 'LayerScale';

  readonly initValues: number;
  readonly projectionDim: number;
  private gamma!: tf.LayerVariable;

  constructor(args: LayerScaleArgs) {
    super({ name: args.name });
    this.initValues = args.initValues;
    this.projectionDim = args.projectionDim;
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const channels = lastDimension(this.name, inputShape);
    if (channels !== this.projectionDim) {
      throw new Error(`${this.name}: projectionDim is ${this.projectionDim} but the input has ${channels} channels.`);
    }
    this.gamma = this.addWeight('gamma', [channels], 'float32', tf.initializers.constant({ value: this.initValues }));
    this.built = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.mul(single(inputs), this.gamma.read());
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), initValues: this.initValues, projectionDim: this.projectionDim };
  }
}
tf.serialization.registerClass(LayerScale);

export interface ChannelwiseConv2DArgs {
  name: string;
  /** Input channels, which are also the filters and the groups. */
  channels: number;
  kernelSize: number;
  padding?: 'same' | 'valid';
  useBias?: boolean;
}

/**
 * Keras's Conv2D(filters=C, groups=C) on C input channels, the depthwise
 * convolution ConvNeXt writes as a grouped Conv2D. It keeps Keras's weight
 * layout, kernel [k, k, 1, C] and bias [C], so Keras weights load by name,
 * and computes a depthwise convolution with the kernel reshaped to
 * [k, k, C, 1], which contains the same values in the same order. tfjs-layers'
 * Conv2D has no groups, so the class is registered under a name of its own.
 */
export class ChannelwiseConv2D extends tf.layers.Layer {
  static className = 'ChannelwiseConv2D';

  readonly channels: number;
  readonly kernelSize: number;
  readonly padding: 'same' | 'valid';
  readonly useBias: boolean;
  private kernel!: tf.LayerVariable;
  private bias: tf.LayerVariable | undefined;

  constructor(args: ChannelwiseConv2DArgs) {
    super({ name: args.name });
    this.channels = args.channels;
    this.kernelSize = args.kernelSize;
    this.padding = args.padding ?? 'valid';
    this.useBias = args.useBias ?? true;
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const channels = lastDimension(this.name, inputShape);
    if (channels !== this.channels) {
      throw new Error(
        `${this.name}: built for ${this.channels} channels but the input has ${channels}; ` +
          'groups must equal the input channels and the filters.',
      );
    }
    const k = this.kernelSize;
    this.kernel = this.addWeight('kernel', [k, k, 1, channels], 'float32', tf.initializers.glorotUniform({}));
    if (this.useBias) {
      this.bias = this.addWeight('bias', [channels], 'float32', tf.initializers.zeros());
    }
    this.built = true;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    if (this.padding === 'same') {
      return [...shape];
    }
    const shrink = (size: number | null): number | null => (size == null ? null : size - this.kernelSize + 1);
    return [shape[0] ?? null, shrink(shape[1] ?? null), shrink(shape[2] ?? null), this.channels];
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const x = single(inputs) as tf.Tensor4D;
      const k = this.kernelSize;
      const kernel = tf.reshape(this.kernel.read(), [k, k, this.channels, 1]) as tf.Tensor4D;
      const y = tf.depthwiseConv2d(x, kernel, 1, this.padding);
      return this.bias === undefined ? y : tf.add(y, this.bias.read());
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      channels: this.channels,
      kernelSize: this.kernelSize,
      padding: this.padding,
      useBias: this.useBias,
    };
  }
}
tf.serialization.registerClass(ChannelwiseConv2D);
