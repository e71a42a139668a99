/** Keras Applications' input preprocessing, applied to float RGB batches in [0, 255]. */
import * as tf from '@tensorflow/tfjs';

import type { PreprocessingMode } from '../models/types';

/** ImageNet channel means in BGR order, as keras.applications.imagenet_utils uses for 'caffe'. */
const CAFFE_BGR_MEAN = [103.939, 116.779, 123.68];
const TORCH_MEAN = [0.485, 0.456, 0.406];
const TORCH_STD = [0.229, 0.224, 0.225];

export function describePreprocessing(mode: PreprocessingMode): string {
  switch (mode) {
    case 'tf':
      return 'RGB scaled to [-1, 1]: x / 127.5 - 1';
    case 'caffe':
      return 'RGB converted to BGR, then ImageNet BGR means [103.939, 116.779, 123.68] subtracted';
    case 'torch':
      return 'RGB scaled to [0, 1], then normalised with ImageNet mean [0.485, 0.456, 0.406] and std [0.229, 0.224, 0.225]';
    case 'none':
      return 'raw RGB in [0, 255]; the model rescales internally';
  }
}

export function preprocess(images: tf.Tensor4D, mode: PreprocessingMode): tf.Tensor4D {
  return tf.tidy(() => {
    switch (mode) {
      case 'tf':
        return tf.sub(tf.div(images, 127.5), 1);
      case 'caffe':
        return tf.sub(tf.reverse(images, -1), tf.tensor1d(CAFFE_BGR_MEAN));
      case 'torch':
        return tf.div(tf.sub(tf.div(images, 255), tf.tensor1d(TORCH_MEAN)), tf.tensor1d(TORCH_STD));
      case 'none':
        return images.clone();
    }
  });
}

/** Converts a uint8 NHWC RGB batch to a float32 tensor in [0, 255]. */
export function pixelsToTensor(pixels: Uint8Array, count: number, size: number): tf.Tensor4D {
  return tf.tensor4d(Float32Array.from(pixels), [count, size, size, 3], 'float32');
}
