/**
 * Folds each frozen batch-norm layer into the convolution before it, for
 * training-mode calls only.
 *
 * A FrozenBatchNormalization after a convolution computes conv(x, W) * a + b
 * with constant a and b. That equals conv(x, W * a) + b: the scaling moves
 * from the full-size activation to the small kernel, and b becomes the bias
 * of the fused convolution kernel. A training step then runs no separate
 * multiply and add over each activation, and no multiply in their gradient.
 * The kernel W stays the trained variable; its gradient goes through W * a.
 *
 * Inference-mode calls (predict, evaluation, Grad-CAM, export) are left as
 * they are, so every layer's output there is exactly what it was. In
 * training mode the convolution's own output is already normalized, and the
 * batch-norm layer passes it on unchanged. No code reads the convolution's
 * output alone in training mode.
 */
import * as tf from '@tensorflow/tfjs';

import { FrozenBatchNormalization, single, type Kwargs } from './layers';

type CallFunction = (inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs) => tf.Tensor | tf.Tensor[];

/** The fields of tfjs-layers' Conv2D and DepthwiseConv2D that folding reads. */
interface ConvFields {
  kernel?: tf.LayerVariable;
  depthwiseKernel?: tf.LayerVariable;
  bias?: tf.LayerVariable | null;
  strides: number[];
  padding: 'same' | 'valid';
  dataFormat: string;
  dilationRate: number[] | number;
  activation?: { getClassName(): string };
}

/** Inbound nodes of a layer, as tfjs-layers keeps them. */
function inboundInputs(layer: tf.layers.Layer): tf.layers.Layer[][] {
  const nodes = (layer as unknown as { inboundNodes: Array<{ inboundLayers: tf.layers.Layer[] }> }).inboundNodes;
  return nodes.map((node) => node.inboundLayers);
}

function outboundCount(layer: tf.layers.Layer): number {
  return (layer as unknown as { outboundNodes: unknown[] }).outboundNodes.length;
}

function isLinear(fields: ConvFields): boolean {
  const name = fields.activation?.getClassName();
  return name === undefined || name === 'linear' || name === 'Linear';
}

/** Scale a and offset b of a frozen batch-norm layer: y = x * a + b. */
function affine(bn: FrozenBatchNormalization): { scale: tf.Tensor1D; offset: tf.Tensor1D } {
  const [gamma, beta, mean, variance] = bn.weights.map((w) => w.read()) as [tf.Tensor1D, tf.Tensor1D, tf.Tensor1D, tf.Tensor1D];
  const scale = tf.mul(gamma, tf.rsqrt(tf.add(variance, bn.epsilon))) as tf.Tensor1D;
  return { scale, offset: tf.sub(beta, tf.mul(mean, scale)) as tf.Tensor1D };
}

/**
 * Patches the training-mode calls of every convolution whose only consumer
 * is a FrozenBatchNormalization (and of that layer). Returns the number of
 * pairs folded. Calling it again on the same model changes nothing.
 */
export function foldFrozenBatchNorm(model: tf.LayersModel): number {
  let folded = 0;
  for (const layer of model.layers) {
    if (!(layer instanceof FrozenBatchNormalization) || layer.foldedInto !== undefined) {
      continue;
    }
    const inputs = inboundInputs(layer);
    const conv = inputs.length === 1 && inputs[0]?.length === 1 ? inputs[0][0] : undefined;
    const className = conv?.getClassName();
    if (conv === undefined || (className !== 'Conv2D' && className !== 'DepthwiseConv2D')) {
      continue;
    }
    const fields = conv as unknown as ConvFields;
    if (outboundCount(conv) !== 1 || inboundInputs(conv).length !== 1 || fields.dataFormat !== 'channelsLast' || !isLinear(fields)) {
      continue;
    }
    patchPair(conv, className, fields, layer);
    folded++;
  }
  return folded;
}

function patchPair(conv: tf.layers.Layer, className: 'Conv2D' | 'DepthwiseConv2D', fields: ConvFields, bn: FrozenBatchNormalization): void {
  const convCall = conv.call.bind(conv) as CallFunction;
  const bnCall = bn.call.bind(bn) as CallFunction;
  bn.foldedInto = conv.name;

  conv.call = ((inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs) => {
    if (kwargs['training'] !== true) {
      return convCall(inputs, kwargs);
    }
    return tf.tidy(() => {
      const x = single(inputs) as tf.Tensor4D;
      const { scale, offset } = affine(bn);
      const bias = fields.bias == null ? offset : tf.add(tf.mul(fields.bias.read(), scale), offset);
      const common = { x, strides: fields.strides as [number, number], pad: fields.padding, dataFormat: 'NHWC' as const, bias };
      if (className === 'Conv2D') {
        const kernel = (fields.kernel as tf.LayerVariable).read() as tf.Tensor4D;
        const dilations = fields.dilationRate as [number, number] | number;
        return tf.fused.conv2d({ ...common, filter: tf.mul(kernel, scale) as tf.Tensor4D, dilations });
      }
      // tfjs-layers' DepthwiseConv2D ignores its dilation rate, so the folded call does too.
      const kernel = (fields.depthwiseKernel as tf.LayerVariable).read() as tf.Tensor4D;
      // Output channel c * multiplier + m comes from kernel[:, :, c, m].
      const perKernel = tf.reshape(scale, [1, 1, kernel.shape[2], kernel.shape[3]]);
      return tf.fused.depthwiseConv2d({ ...common, filter: tf.mul(kernel, perKernel) as tf.Tensor4D });
    });
  }) as typeof conv.call;

  bn.call = ((inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs) =>
    kwargs['training'] === true ? single(inputs) : bnCall(inputs, kwargs)) as typeof bn.call;
}
