/**
 * Analytic floating-point operation counts of a layers model per image: two
 * operations per multiply-add of the convolutions (regular, depthwise and
 * channel-wise) and dense layers. Element-wise layers (batch norm,
 * activations, additions, pooling) are left out, so the counts are lower
 * bounds that cover the arithmetic a CPU spends most of its time on.
 */
import type * as tf from '@tensorflow/tfjs';

import { modelNode } from '../onnx/export';

/** Forward operations of one layer per image, or 0 for layers without multiply-adds. */
export function layerForwardFlops(layer: tf.layers.Layer): number {
  const className = layer.getClassName();
  const kernel = layer.weights.find((w) => /(^|\/)(depthwise_)?kernel(_\d+)?$/.test(w.originalName));
  if (kernel === undefined) {
    return 0;
  }
  const kernelShape = kernel.shape as number[];
  const output = layer.outputShape as Array<number | null>;
  const outputPositions = output.slice(1, -1).reduce<number>((product, d) => product * (d ?? 1), 1);
  const kernelSize = kernelShape.reduce((product, d) => product * d, 1);
  switch (className) {
    case 'Conv2D':
    case 'DepthwiseConv2D':
    case 'ChannelwiseConv2D':
    case 'Dense':
      // Each output position applies the whole kernel once: [kh, kw, cin, cout],
      // [kh, kw, C, multiplier], [k, k, 1, C] or [in, out] multiply-adds.
      return 2 * outputPositions * kernelSize;
    default:
      return 0;
  }
}

export interface ModelFlops {
  /** Forward pass per image. */
  forward: number;
  /**
   * One training step per image: the forward pass, the gradient with respect
   * to the input of every layer that a trainable layer feeds (each as costly
   * as its forward pass), and the weight gradient of every trainable layer.
   */
  training: number;
}

/** Counts forward and training operations per image with the layers' current `trainable` flags. */
export function modelFlops(model: tf.LayersModel): ModelFlops {
  // A layer passes gradients back to its inputs when some trainable layer lies at or before it.
  const gradientFlows = new Set<string>();
  let forward = 0;
  let backward = 0;
  for (const layer of model.layers) {
    if (layer.getClassName() === 'InputLayer') {
      continue;
    }
    const flops = layerForwardFlops(layer);
    const trainable = layer.trainable && layer.trainableWeights.length > 0;
    const upstreamTrains = modelNode(model, layer).inputs.some((input) => gradientFlows.has(input.sourceLayer.name));
    forward += flops;
    if (upstreamTrains) {
      backward += flops;
    }
    if (trainable) {
      backward += flops;
    }
    if (trainable || upstreamTrains) {
      gradientFlows.add(layer.name);
    }
  }
  return { forward, training: forward + backward };
}
