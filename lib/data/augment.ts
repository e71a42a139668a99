/**
 * Training-time augmentation on image batches, with Keras ImageDataGenerator's
 * meaning of the settings: rotation by a uniform angle in
 * [-rotationDegrees, rotationDegrees], shifts by a uniform fraction of the
 * width and height in [-shift, shift], a horizontal flip with probability 0.5,
 * bilinear sampling, and nearest-edge filling of uncovered pixels.
 */
import * as tf from '@tensorflow/tfjs';

import { Rng } from '../util/rng';

export interface AugmentationSettings {
  rotationDegrees: number;
  widthShift: number;
  heightShift: number;
  horizontalFlip: boolean;
}

export const STUDY_AUGMENTATION: AugmentationSettings = {
  rotationDegrees: 20,
  widthShift: 0.2,
  heightShift: 0.2,
  horizontalFlip: true,
};

export function isAugmentationOff(settings: AugmentationSettings): boolean {
  return settings.rotationDegrees === 0 && settings.widthShift === 0 && settings.heightShift === 0 && !settings.horizontalFlip;
}

/**
 * Returns one projective transform per image, [a0, a1, a2, b0, b1, b2, 0, 0],
 * mapping output pixel (x, y) to input pixel (a0 x + a1 y + a2, b0 x + b1 y + b2),
 * as tf.image.transform and TensorFlow's ImageProjectiveTransformV3 expect.
 */
export function randomTransforms(count: number, height: number, width: number, settings: AugmentationSettings, rng: Rng): Float32Array {
  const out = new Float32Array(count * 8);
  const cx = (width - 1) / 2;
  const cy = (height - 1) / 2;
  for (let i = 0; i < count; i++) {
    const theta = (rng.uniform(-settings.rotationDegrees, settings.rotationDegrees) * Math.PI) / 180;
    const tx = rng.uniform(-settings.widthShift, settings.widthShift) * width;
    const ty = rng.uniform(-settings.heightShift, settings.heightShift) * height;
    const flip = settings.horizontalFlip && rng.next() < 0.5;
    const cos = Math.cos(theta);
    const sin = Math.sin(theta);
    const s = flip ? -1 : 1;
    const f = flip ? width - 1 : 0;
    // Output pixel -> undo the shift, rotate back about the centre, then mirror.
    out.set(
      [
        s * cos,
        s * sin,
        s * (-cos * (tx + cx) - sin * (ty + cy) + cx) + f,
        -sin,
        cos,
        sin * (tx + cx) - cos * (ty + cy) + cy,
        0,
        0,
      ],
      i * 8,
    );
  }
  return out;
}

interface NodeOpBackend {
  executeSingleOutput(name: string, attrs: unknown[], inputs: tf.Tensor[]): tf.Tensor;
}

/** Applies projective transforms with TensorFlow's native kernel on tfjs-node, else tf.image.transform. */
export function applyTransforms(images: tf.Tensor4D, transforms: Float32Array): tf.Tensor4D {
  const [n, h, w] = images.shape;
  return tf.tidy(() => {
    const matrix = tf.tensor2d(transforms, [n, 8]);
    if (tf.getBackend() === 'tensorflow') {
      const backend = tf.backend() as unknown as NodeOpBackend;
      const binding = (backend as unknown as { binding: Record<string, number> }).binding;
      const attrs = [
        { name: 'dtype', type: binding['TF_ATTR_TYPE'], value: binding['TF_FLOAT'] },
        { name: 'interpolation', type: binding['TF_ATTR_STRING'], value: 'BILINEAR' },
        { name: 'fill_mode', type: binding['TF_ATTR_STRING'], value: 'NEAREST' },
      ];
      const outputShape = tf.tensor1d([h, w], 'int32');
      const fillValue = tf.scalar(0, 'float32');
      return backend.executeSingleOutput('ImageProjectiveTransformV3', attrs, [images, matrix, outputShape, fillValue]) as tf.Tensor4D;
    }
    if (tf.getBackend() === 'cpu') {
      // tfjs-backend-cpu 4.22's Transform kernel returns after the first image, so go one image at a time.
      const slices = tf.split(images, n, 0).map((image, i) =>
        tf.image.transform(image as tf.Tensor4D, tf.slice(matrix, [i, 0], [1, 8]), 'bilinear', 'nearest', 0, [h, w]),
      );
      return tf.concat(slices, 0) as tf.Tensor4D;
    }
    return tf.image.transform(images, matrix, 'bilinear', 'nearest', 0, [h, w]);
  });
}

/** Augments a float batch [n, h, w, c]; the result depends only on the batch and the rng state. */
export function augmentBatch(images: tf.Tensor4D, settings: AugmentationSettings, rng: Rng): tf.Tensor4D {
  if (isAugmentationOff(settings)) {
    return images.clone();
  }
  const [n, h, w] = images.shape;
  return applyTransforms(images, randomTransforms(n, h, w, settings, rng));
}
