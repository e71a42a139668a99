/**
 * Layers that replace tfjs-layers classes where the training behaviour of
 * transfer learning needs something else. Each reports the standard class
 * name and config, so a saved model.json loads in plain TensorFlow.js (a
 * browser included) as ordinary BatchNormalization, ReLU and Dropout layers,
 * which compute the same thing at inference.
 */
import * as tf from '@tensorflow/tfjs';

import { Rng } from '../util/rng';
import { relu, relu6 } from './fast_ops';

type Kwargs = Record<string, unknown>;

function single(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
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

  private readonly epsilon: number;
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

export interface SeededDropoutArgs {
  name: string;
  rate: number;
}

/**
 * Dropout whose mask comes from the run's seed. tfjs-layers' Dropout with a
 * fixed `seed` draws the same mask at every step, and without one it cannot
 * be reproduced.
 */
export class SeededDropout extends tf.layers.Layer {
  static className = 'Dropout';

  readonly rate: number;

  constructor(args: SeededDropoutArgs) {
    super({ name: args.name });
    if (!(args.rate >= 0 && args.rate < 1)) {
      throw new Error(`${args.name}: invalid dropout rate ${args.rate}; expected 0 <= rate < 1.`);
    }
    this.rate = args.rate;
    this.supportsMasking = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor {
    const x = single(inputs);
    if (kwargs['training'] !== true || this.rate === 0) {
      return x;
    }
    return tf.dropout(x, this.rate, undefined, dropoutRng.nextUint32());
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), rate: this.rate, noiseShape: null, seed: null };
  }
}
