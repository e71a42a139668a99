/**
 * Ops whose tfjs gradients are slow on the CPU, with faster gradients.
 *
 * tfjs-core composes many gradients from several elementwise ops (ReLU6's
 * gradient is four full-size tensors). On the tfjs-node backend the same
 * gradient is one native TensorFlow kernel, which matters because a training
 * step of a small CNN on a CPU is dominated by such elementwise work, not by
 * convolutions. On other backends the tfjs-core gradient is used.
 */
import * as tf from '@tensorflow/tfjs';

interface NodeBackend {
  executeSingleOutput(name: string, attrs: unknown[], inputs: tf.Tensor[]): tf.Tensor;
}

type TypeAttrFactory = (name: string, tensors: tf.Tensor[] | string) => unknown;

let typeAttrFactory: TypeAttrFactory | null | undefined;

function nodeBackend(): NodeBackend | undefined {
  if (tf.getBackend() !== 'tensorflow') {
    return undefined;
  }
  if (typeAttrFactory === undefined) {
    try {
      // Resolved lazily: only present when tfjs-node or tfjs-node-gpu is installed.
      const module = require('@tensorflow/tfjs-node/dist/nodejs_kernel_backend') as {
        createTensorsTypeOpAttr: TypeAttrFactory;
      };
      typeAttrFactory = module.createTensorsTypeOpAttr;
    } catch {
      typeAttrFactory = null;
    }
  }
  if (typeAttrFactory === null) {
    return undefined;
  }
  return tf.backend() as unknown as NodeBackend;
}

/** Runs a TensorFlow op by name on tfjs-node, or returns undefined on other backends. */
function runNative(name: string, inputs: tf.Tensor[]): tf.Tensor | undefined {
  const backend = nodeBackend();
  if (backend === undefined || typeAttrFactory == null) {
    return undefined;
  }
  const attrs = [typeAttrFactory('T', 'float32')];
  return backend.executeSingleOutput(name, attrs, inputs);
}

const relu6WithGrad = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
  const [x, save] = args as [tf.Tensor, tf.GradSaveFunc];
  const y = tf.relu6(x);
  save([x]);
  return {
    value: y,
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const features = saved[0] as tf.Tensor;
      const native = runNative('Relu6Grad', [dy, features]);
      if (native !== undefined) {
        return native;
      }
      const mask = tf.logicalAnd(tf.greater(features, 0), tf.lessEqual(features, 6));
      return tf.mul(dy, tf.cast(mask, 'float32'));
    },
  };
});

const reluWithGrad = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
  const [x, save] = args as [tf.Tensor, tf.GradSaveFunc];
  const y = tf.relu(x);
  save([y]);
  return {
    value: y,
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const output = saved[0] as tf.Tensor;
      // ReluGrad takes the forward output or input alike: both are > 0 at the same places.
      const native = runNative('ReluGrad', [dy, output]);
      if (native !== undefined) {
        return native;
      }
      return tf.mul(dy, tf.step(output));
    },
  };
});

/** min(max(x, 0), 6), with a one-kernel gradient on tfjs-node. */
export function relu6(x: tf.Tensor): tf.Tensor {
  return relu6WithGrad(x) as tf.Tensor;
}

/** max(x, 0), with a one-kernel gradient on tfjs-node. */
export function relu(x: tf.Tensor): tf.Tensor {
  return reluWithGrad(x) as tf.Tensor;
}
