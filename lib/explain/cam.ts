/**
 * Class activation maps on one base, in the style of pytorch-grad-cam. The
 * base runs the model split at a named layer and, for methods that need them,
 * computes the gradients of the target class score with respect to that
 * layer's output. Each method supplies one weight per channel, and the base
 * returns ReLU(sum_k w_k A_k) normalised to [0, 1] and upsampled to the model input.
 *
 * The target class is scored by its pre-softmax logit, as pytorch-grad-cam
 * (ClassifierOutputTarget on the raw model output) and the Keras Grad-CAM
 * example (keras.io/examples/vision/grad_cam, which sets the last layer's
 * activation to None) do. Softmax gradients shrink towards zero for confident
 * predictions and mix in the other classes' scores.
 */
import * as tf from '@tensorflow/tfjs';

import type { FerModel } from '../models/factory';
import { firstComponentProjection } from './eigen';
import { disposeForward, splitModel, type ForwardResult, type ScoreKind, type SplitModel } from './graph';

export const CAM_METHODS = ['gradcam', 'gradcam++', 'eigencam', 'scorecam'] as const;
export type CamMethod = (typeof CAM_METHODS)[number];

export interface CamOptions {
  /**
   * Layer whose output is explained. Default for a FerModel: the backbone's
   * registered last convolutional feature map (BackboneSpec.lastConvLayer).
   * Required for a plain LayersModel.
   */
  layer?: string;
  /** Score of the target class that gradients are taken of; default 'logit'. */
  score?: ScoreKind;
}

export interface ScoreCamOptions extends CamOptions {
  /** Masked images per model.predict call; default 32. */
  batchSize?: number;
  /**
   * Channels used per image, those with the highest mean activation; the
   * others get weight 0. Default: every channel, which costs one forward pass
   * of the model per channel and image.
   */
  maxChannels?: number;
}

export interface ExplainOptions {
  /** Class index to explain, one for the whole batch or one per image; default: the predicted class. */
  targetClasses?: number | readonly number[];
}

/** One image's class activation map and the prediction it explains. */
export interface Explanation {
  method: CamMethod;
  /** Layer whose output the map is computed from. */
  layerName: string;
  targetClass: number;
  predictedClass: number;
  /** Softmax output of the model for this image. */
  probabilities: Float32Array;
  /** Score of the target class that gradients were taken of: a logit, or a probability with score 'probability'. */
  targetScore: number;
  /** ReLU(sum_k w_k A_k) divided by its maximum, at the layer's resolution, row-major. */
  layerMap: Float32Array;
  layerHeight: number;
  layerWidth: number;
  /** layerMap resized bilinearly (half-pixel centres) to the model input, row-major, values in [0, 1]. */
  heatmap: Float32Array;
  height: number;
  width: number;
  /**
   * Maximum of ReLU(sum_k w_k A_k) before normalisation. 0 means the map is
   * empty: nothing at this layer raises the target score, and both maps are 0.
   */
  rawMax: number;
}

/** Inputs of a method's channel weights or map. */
export interface CamContext {
  /** The preprocessed input batch, [n, height, width, 3]. */
  input: tf.Tensor4D;
  /** The target layer's output, [n, h, w, channels]. */
  activations: tf.Tensor4D;
  /** d(target score)/d(activations), same shape; undefined for gradient-free methods. */
  gradients: tf.Tensor4D | undefined;
  targetClasses: number[];
  forward: ForwardResult;
}

function isFerModel(model: tf.LayersModel | FerModel): model is FerModel {
  return (model as FerModel).backbone !== undefined && (model as FerModel).model !== undefined;
}

function oneHot(classes: readonly number[], numClasses: number): tf.Tensor2D {
  return tf.oneHot(tf.tensor1d(classes as number[], 'int32'), numClasses).toFloat() as tf.Tensor2D;
}

/** Base of every CAM method: model split, gradients, weighting, ReLU, normalisation and upsampling. */
export abstract class ClassActivationMap {
  abstract readonly method: CamMethod;
  /** Whether explain() computes gradients of the target score for this method. */
  protected readonly usesGradients: boolean = true;

  readonly split: SplitModel;
  readonly layerName: string;
  readonly inputHeight: number;
  readonly inputWidth: number;
  readonly numClasses: number;

  constructor(model: tf.LayersModel | FerModel, options: CamOptions = {}) {
    const layersModel = isFerModel(model) ? model.model : model;
    const layer = options.layer ?? (isFerModel(model) ? model.backbone.lastConvLayer : undefined);
    if (layer === undefined) {
      throw new Error(
        `No target layer given for model "${layersModel.name}". Pass options.layer with the name of a layer that outputs a 4-D feature map.`,
      );
    }
    this.split = splitModel(layersModel, layer, options.score ?? 'logit');
    this.layerName = layer;
    const [, h, w] = layersModel.inputs[0]?.shape ?? [];
    if (h == null || w == null) {
      throw new Error(`Model "${layersModel.name}" needs a fixed input size for class activation maps; got ${JSON.stringify(layersModel.inputs[0]?.shape)}.`);
    }
    this.inputHeight = h;
    this.inputWidth = w;
    this.numClasses = layersModel.outputs[0]?.shape[1] as number;
  }

  /**
   * Returns one weight per image and channel, [n, channels]. Methods that
   * weigh the activations override this, and methods that build the map
   * another way override rawMaps instead.
   */
  protected weights(_context: CamContext): tf.Tensor2D | Promise<tf.Tensor2D> {
    throw new Error(`${this.method} does not define channel weights.`);
  }

  /** Returns the map before ReLU, [n, h, w]: sum_k w_k A_k by default. */
  protected async rawMaps(context: CamContext): Promise<tf.Tensor3D> {
    const weights = await this.weights(context);
    try {
      return tf.tidy(() => tf.sum(tf.mul(context.activations, weights.reshape([weights.shape[0], 1, 1, weights.shape[1]])), -1) as tf.Tensor3D);
    } finally {
      weights.dispose();
    }
  }

  private resolveTargets(targets: ExplainOptions['targetClasses'], predicted: number[]): number[] {
    const n = predicted.length;
    let classes: number[];
    if (targets === undefined) {
      classes = predicted;
    } else if (typeof targets === 'number') {
      classes = new Array<number>(n).fill(targets);
    } else {
      if (targets.length !== n) {
        throw new RangeError(`Got ${targets.length} target classes for a batch of ${n} images; give one per image or a single class.`);
      }
      classes = [...targets];
    }
    for (const c of classes) {
      if (!Number.isInteger(c) || c < 0 || c >= this.numClasses) {
        throw new RangeError(`Invalid target class ${c}: expected an integer from 0 to ${this.numClasses - 1}.`);
      }
    }
    return classes;
  }

  /**
   * Computes the maps of a preprocessed batch [n, height, width, 3]. The
   * images are independent, so a batch gives the same maps as one image at a
   * time. The caller keeps ownership of `input`.
   */
  async explain(input: tf.Tensor4D, options: ExplainOptions = {}): Promise<Explanation[]> {
    const [n, h, w] = input.shape;
    if (h !== this.inputHeight || w !== this.inputWidth) {
      throw new RangeError(`Input of ${h}x${w} pixels does not fit the model, which takes ${this.inputHeight}x${this.inputWidth}.`);
    }
    const forward = this.split.forward(input);
    let gradients: tf.Tensor4D | undefined;
    let maps: tf.Tensor3D | undefined;
    try {
      const probabilities = (await forward.probabilities.array()) as number[][];
      const predicted = probabilities.map((p) => p.indexOf(Math.max(...p)));
      const targetClasses = this.resolveTargets(options.targetClasses, predicted);
      const scores = (await forward.scores.array()) as number[][];

      if (this.usesGradients) {
        gradients = tf.tidy(() => {
          const mask = oneHot(targetClasses, this.numClasses);
          const grad = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(this.split.headScores(a as tf.Tensor4D, forward.upstream), mask)));
          return grad(forward.activations) as tf.Tensor4D;
        });
      }
      maps = await this.rawMaps({ input, activations: forward.activations, gradients, targetClasses, forward });
      return await this.finish(maps, n, probabilities, predicted, targetClasses, scores);
    } finally {
      gradients?.dispose();
      maps?.dispose();
      disposeForward(forward);
    }
  }

  private async finish(
    raw: tf.Tensor3D,
    n: number,
    probabilities: number[][],
    predicted: number[],
    targetClasses: number[],
    scores: number[][],
  ): Promise<Explanation[]> {
    const [, lh, lw] = raw.shape;
    const [normalised, maxima] = tf.tidy(() => {
      const relu = tf.relu(raw);
      const max = tf.max(relu, [1, 2]);
      // An all-zero map stays zero instead of dividing by zero.
      const safe = tf.where(tf.greater(max, 0), max, tf.onesLike(max));
      return [tf.div(relu, safe.reshape([n, 1, 1])) as tf.Tensor3D, max];
    });
    const upsampled = tf.tidy(() =>
      tf.image.resizeBilinear(normalised.reshape([n, lh, lw, 1]) as tf.Tensor4D, [this.inputHeight, this.inputWidth], false, true),
    );
    try {
      const layerData = await normalised.data<'float32'>();
      const heatData = await upsampled.data<'float32'>();
      const maxData = await maxima.data<'float32'>();
      const layerSize = lh * lw;
      const heatSize = this.inputHeight * this.inputWidth;
      return Array.from({ length: n }, (_, i) => ({
        method: this.method,
        layerName: this.layerName,
        targetClass: targetClasses[i] as number,
        predictedClass: predicted[i] as number,
        probabilities: Float32Array.from(probabilities[i] as number[]),
        targetScore: (scores[i] as number[])[targetClasses[i] as number] as number,
        layerMap: layerData.slice(i * layerSize, (i + 1) * layerSize),
        layerHeight: lh,
        layerWidth: lw,
        heatmap: heatData.slice(i * heatSize, (i + 1) * heatSize),
        height: this.inputHeight,
        width: this.inputWidth,
        rawMax: maxData[i] as number,
      }));
    } finally {
      normalised.dispose();
      maxima.dispose();
      upsampled.dispose();
    }
  }
}

/** Grad-CAM (Selvaraju et al., 2017): each channel weighs by its spatially averaged gradient. */
export class GradCam extends ClassActivationMap {
  readonly method = 'gradcam' as const;

  protected override weights(context: CamContext): tf.Tensor2D {
    return tf.mean(context.gradients as tf.Tensor4D, [1, 2]) as tf.Tensor2D;
  }
}

/**
 * Grad-CAM++ (Chattopadhyay et al., 2018), in the closed form of the paper's
 * equation 19 that pytorch-grad-cam uses. With the class score S passed
 * through exp, the second and third derivatives of exp(S) are powers of the
 * first, exact where the layers after the target are piecewise linear (ReLU
 * heads), so alpha = g^2 / (2 g^2 + sum_ab(A) g^3) with g = dS/dA, and
 * w_k = sum_ij alpha_ij ReLU(g_ij). The common factor exp(S) is left out
 * because the map is normalised by its maximum.
 */
export class GradCamPlusPlus extends ClassActivationMap {
  readonly method = 'gradcam++' as const;

  protected override weights(context: CamContext): tf.Tensor2D {
    return tf.tidy(() => {
      const g = context.gradients as tf.Tensor4D;
      const g2 = tf.square(g);
      const g3 = tf.mul(g2, g);
      const sumActivations = tf.sum(context.activations, [1, 2], true);
      // eps as in pytorch-grad-cam, so that channels with zero gradient do not divide by zero.
      const alpha = tf.div(g2, tf.add(tf.add(tf.mul(g2, 2), tf.mul(sumActivations, g3)), 1e-6));
      const alphaWhereGradient = tf.where(tf.notEqual(g, 0), alpha, tf.zerosLike(alpha));
      return tf.sum(tf.mul(alphaWhereGradient, tf.relu(g)), [1, 2]) as tf.Tensor2D;
    });
  }
}

/**
 * Eigen-CAM (Muhammad and Yeasin, 2020): the projection of the activations on
 * their first principal component. It uses no gradients and no class, so the
 * map is the same whatever the target class.
 */
export class EigenCam extends ClassActivationMap {
  readonly method = 'eigencam' as const;
  protected override readonly usesGradients = false;

  protected override async rawMaps(context: CamContext): Promise<tf.Tensor3D> {
    const [n, h, w, c] = context.activations.shape;
    const data = await context.activations.data<'float32'>();
    const out = new Float32Array(n * h * w);
    for (let i = 0; i < n; i++) {
      const image = data.subarray(i * h * w * c, (i + 1) * h * w * c);
      out.set(firstComponentProjection(image, h * w, c), i * h * w);
    }
    return tf.tensor3d(out, [n, h, w]);
  }
}

/**
 * Score-CAM (Wang et al., 2020). Each channel's map, upsampled to the input
 * and scaled to [0, 1], masks the preprocessed input. The channel's weight is
 * the softmax probability of the target class on that masked input, as in
 * the authors' implementation, and channels whose map is constant get
 * weight 0. It uses no gradients. The cost is one forward pass per channel
 * and image, bounded by maxChannels.
 */
export class ScoreCam extends ClassActivationMap {
  readonly method = 'scorecam' as const;
  protected override readonly usesGradients = false;
  private readonly batchSize: number;
  private readonly maxChannels: number | undefined;

  constructor(model: tf.LayersModel | FerModel, options: ScoreCamOptions = {}) {
    super(model, options);
    this.batchSize = options.batchSize ?? 32;
    this.maxChannels = options.maxChannels;
    if (!Number.isInteger(this.batchSize) || this.batchSize < 1) {
      throw new RangeError(`Invalid Score-CAM batch size ${this.batchSize}: expected an integer >= 1.`);
    }
    if (this.maxChannels !== undefined && (!Number.isInteger(this.maxChannels) || this.maxChannels < 1)) {
      throw new RangeError(`Invalid Score-CAM channel limit ${this.maxChannels}: expected an integer >= 1.`);
    }
  }

  protected override async weights(context: CamContext): Promise<tf.Tensor2D> {
    const [n, h, w, c] = context.activations.shape;
    const out = new Float32Array(n * c);
    for (let i = 0; i < n; i++) {
      const channels = await this.selectChannels(context.activations, i);
      const target = context.targetClasses[i] as number;
      const masks = tf.tidy(() => {
        const a = context.activations.slice([i, 0, 0, 0], [1, h, w, c]).reshape([h, w, c]);
        const perChannel = tf.transpose(a, [2, 0, 1]).reshape([c, h, w, 1]) as tf.Tensor4D;
        const chosen = tf.gather(perChannel, tf.tensor1d(channels, 'int32'));
        const up = tf.image.resizeBilinear(chosen, [this.inputHeight, this.inputWidth], false, true);
        const min = tf.min(up, [1, 2, 3], true);
        const max = tf.max(up, [1, 2, 3], true);
        const range = tf.sub(max, min);
        // Constant channels have no spatial information; flag them with range 0 and mask with zeros.
        return { masks: tf.div(tf.sub(up, min), tf.add(range, 1e-8)), range: range.reshape([channels.length]) };
      });
      try {
        const ranges = await masks.range.data<'float32'>();
        for (let start = 0; start < channels.length; start += this.batchSize) {
          const end = Math.min(start + this.batchSize, channels.length);
          const probabilities = tf.tidy(() => {
            const image = context.input.slice([i, 0, 0, 0], [1, this.inputHeight, this.inputWidth, context.input.shape[3]]);
            const chunk = masks.masks.slice([start, 0, 0, 0], [end - start, this.inputHeight, this.inputWidth, 1]);
            return this.split.predict(tf.mul(image, chunk) as tf.Tensor4D).slice([0, target], [end - start, 1]);
          });
          const values = await probabilities.data<'float32'>();
          probabilities.dispose();
          for (let j = start; j < end; j++) {
            out[i * c + (channels[j] as number)] = (ranges[j] as number) > 0 ? (values[j - start] as number) : 0;
          }
        }
      } finally {
        masks.masks.dispose();
        masks.range.dispose();
      }
    }
    return tf.tensor2d(out, [n, c]);
  }

  /** Channel indices of image i to score: all, or the maxChannels with the highest mean activation. */
  private async selectChannels(activations: tf.Tensor4D, i: number): Promise<number[]> {
    const [, h, w, c] = activations.shape;
    const all = Array.from({ length: c }, (_, k) => k);
    if (this.maxChannels === undefined || this.maxChannels >= c) {
      return all;
    }
    const meanTensor = tf.tidy(() => tf.mean(activations.slice([i, 0, 0, 0], [1, h, w, c]), [0, 1, 2]));
    const means = await meanTensor.data<'float32'>();
    meanTensor.dispose();
    return all
      .sort((a, b) => (means[b] as number) - (means[a] as number) || a - b)
      .slice(0, this.maxChannels)
      .sort((a, b) => a - b);
  }
}

/** Creates a CAM of the named method; Score-CAM reads its extra options from `options`. */
export function createCam(method: CamMethod, model: tf.LayersModel | FerModel, options: ScoreCamOptions = {}): ClassActivationMap {
  switch (method) {
    case 'gradcam':
      return new GradCam(model, options);
    case 'gradcam++':
      return new GradCamPlusPlus(model, options);
    case 'eigencam':
      return new EigenCam(model, options);
    case 'scorecam':
      return new ScoreCam(model, options);
    default:
      throw new Error(`Unknown CAM method "${String(method)}": expected one of ${CAM_METHODS.join(', ')}.`);
  }
}
