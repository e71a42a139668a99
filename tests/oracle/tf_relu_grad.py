"""Compute TensorFlow's ReLU and ReLU6 gradients for tests/layers.test.ts.

Reads {"x": [floats], "dy": [floats]} as JSON on stdin and writes, as JSON on
stdout, the float32 gradients of tf.nn.relu and tf.nn.relu6 with respect to x
for the upstream gradient dy (from tf.GradientTape), and the raw kernels
tf.raw_ops.ReluGrad and tf.raw_ops.Relu6Grad applied to (dy, x).
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402


def tape_gradient(function, x, dy):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = function(x)
    return tape.gradient(y, x, output_gradients=dy)


def main():
    request = json.load(sys.stdin)
    x = tf.constant(request["x"], dtype=tf.float32)
    dy = tf.constant(request["dy"], dtype=tf.float32)
    result = {
        "relu": tape_gradient(tf.nn.relu, x, dy).numpy().tolist(),
        "relu6": tape_gradient(tf.nn.relu6, x, dy).numpy().tolist(),
        "relu_grad_kernel": tf.raw_ops.ReluGrad(gradients=dy, features=x).numpy().tolist(),
        "relu6_grad_kernel": tf.raw_ops.Relu6Grad(gradients=dy, features=x).numpy().tolist(),
        "tensorflow_version": tf.__version__,
    }
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
