/**
 * VGG16 and VGG19 with Keras Applications' layer names and structure
 * (keras/src/applications/vgg16.py and vgg19.py, Keras 3.15).
 */
import * as tf from '@tensorflow/tfjs';

import type { BackboneBuildOptions, BackboneSpec, BuiltBackbone } from '../types';
import { apply, conv2d, spatialSize, type Sym } from './common';

const IMAGENET_CLASSES = 1000;

/** Filters of blocks 1-5; VGG16 has 2, 2, 3, 3, 3 convolutions per block and VGG19 2, 2, 4, 4, 4. */
const VGG_FILTERS = [64, 128, 256, 512, 512] as const;

const VGG_CONVS_PER_BLOCK: Record<16 | 19, readonly number[]> = {
  16: [2, 2, 3, 3, 3],
  19: [2, 2, 4, 4, 4],
};

const VGG_BLOCKS = ['block1', 'block2', 'block3', 'block4', 'block5'] as const;

const TOP_LAYERS = new Set(['flatten', 'fc1', 'fc2', 'predictions']);

export function buildVgg(input: Sym, depth: 16 | 19, options: BackboneBuildOptions = {}): BuiltBackbone {
  let x = input;
  VGG_CONVS_PER_BLOCK[depth].forEach((convs, b) => {
    for (let c = 1; c <= convs; c++) {
      x = conv2d(x, { name: `block${b + 1}_conv${c}`, filters: VGG_FILTERS[b] as number, kernelSize: 3, padding: 'same', activation: 'relu' });
    }
    x = apply(tf.layers.maxPooling2d({ name: `block${b + 1}_pool`, poolSize: 2, strides: 2 }), x);
  });
  const features = x;
  if (!options.includeTop) {
    return { features };
  }
  // The ImageNet top flattens the 7x7x512 map, so its weights fit only a 224x224 input.
  const [h, w] = spatialSize(features);
  if (h !== 7 || w !== 7) {
    throw new Error(`VGG${depth} with the ImageNet top needs a 224x224 input; got a ${h}x${w} final feature map. Build without includeTop for other sizes.`);
  }
  let top = apply(tf.layers.flatten({ name: 'flatten' }), features);
  top = apply(tf.layers.dense({ name: 'fc1', units: 4096, activation: 'relu' }), top);
  top = apply(tf.layers.dense({ name: 'fc2', units: 4096, activation: 'relu' }), top);
  top = apply(tf.layers.dense({ name: 'predictions', units: IMAGENET_CLASSES, activation: 'softmax' }), top);
  return { features, top };
}

function vggBlockOf(layer: string): string | undefined {
  const match = /^(block[1-5])_/.exec(layer);
  if (match) {
    return match[1];
  }
  return TOP_LAYERS.has(layer) ? 'top' : undefined;
}

const KERAS_VGG_URL = 'https://storage.googleapis.com/tensorflow/keras-applications/';

/** MD5 checksums from vgg16.py and vgg19.py (Keras 3.15), with top then without. */
const KERAS_VGG_MD5: Record<16 | 19, [string, string]> = {
  16: ['64373286793e3c8b2b4e3219cbf3544b', '6d6bbae143d832006294945121d1f1fc'],
  19: ['cbe5617147190e668d6c5d5026f83318', '253f8cb515780f3b799900260a226db6'],
};

/** Parameters of keras.applications.VGG16/VGG19(include_top=False) at 224x224 (Keras 3.15). */
const KERAS_VGG_PARAMS_NO_TOP: Record<16 | 19, number> = {
  16: 14_714_688,
  19: 20_024_384,
};

export function vggSpec(depth: 16 | 19): BackboneSpec {
  const [withTopMd5, noTopMd5] = KERAS_VGG_MD5[depth];
  const file = `vgg${depth}/vgg${depth}_weights_tf_dim_ordering_tf_kernels`;
  return {
    name: `VGG${depth}`,
    description: `Keras VGG${depth}: ${depth - 3} 3x3 convolutions with ReLU in five blocks, each ending in 2x2 max pooling`,
    defaultInputSize: 224,
    minInputSize: 32,
    preprocessing: 'caffe',
    // Grad-CAM uses the last convolution's rectified output (the Conv2D layer
    // applies the ReLU) rather than block5_pool, because at 224 it is 14x14
    // instead of 7x7. Each pooled gradient flows back to exactly one position
    // of its 2x2 window, so the channel weights (spatial means of the
    // gradients) are those of block5_pool divided by 4: only the resolution changes.
    lastConvLayer: `block5_conv${(VGG_CONVS_PER_BLOCK[depth][4] as number).toString()}`,
    blocks: VGG_BLOCKS,
    blockOf: vggBlockOf,
    kerasParamsNoTop: KERAS_VGG_PARAMS_NO_TOP[depth],
    weights: {
      kerasNoTop: { url: `${KERAS_VGG_URL}${file}_notop.h5`, md5: noTopMd5 },
      kerasWithTop: { url: `${KERAS_VGG_URL}${file}.h5`, md5: withTopMd5 },
    },
    build: (input, options) => buildVgg(input, depth, options),
  };
}
