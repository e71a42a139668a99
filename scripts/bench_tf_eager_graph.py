"""Times one fine-tuning step of a Keras backbone in TensorFlow's eager mode
and inside tf.function (graph mode), to show how much of Keras's training
speed comes from graph execution. The toolkit's tfjs-node backend runs
TensorFlow's kernels eagerly, one op at a time, so its phase 2 is compared
with both.

The model matches `fer bench`'s phase 2: random weights, global average
pooling, dense 512 ReLU, dropout 0.5, softmax over 7 classes, batch-norm
layers frozen, every other layer trained with Adam at 1e-4, batch 32.

Usage: .venv/bin/python scripts/bench_tf_eager_graph.py MODEL SIZE [STEPS]
MODEL is MobileNetV2, EfficientNetB0, ResNet50V2 or ConvNeXtTiny.
INTER_OP_THREADS=1 limits graph mode to one op at a time.
"""
import os
import sys
import time

import keras
import tensorflow as tf

if os.environ.get("INTER_OP_THREADS"):
    tf.config.threading.set_inter_op_parallelism_threads(int(os.environ["INTER_OP_THREADS"]))

BACKBONES = {
    "MobileNetV2": keras.applications.MobileNetV2,
    "EfficientNetB0": keras.applications.EfficientNetB0,
    "ResNet50V2": keras.applications.ResNet50V2,
    "ConvNeXtTiny": keras.applications.ConvNeXtTiny,
}


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] not in BACKBONES:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(BACKBONES)}}} SIZE [STEPS]")
    name, size = sys.argv[1], int(sys.argv[2])
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    base = BACKBONES[name](include_top=False, weights=None, input_shape=(size, size, 3))
    x = keras.layers.GlobalAveragePooling2D()(base.output)
    x = keras.layers.Dense(512, activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    model = keras.Model(base.input, keras.layers.Dense(7, activation="softmax")(x))
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    optimizer = keras.optimizers.Adam(1e-4)
    loss_fn = keras.losses.CategoricalCrossentropy()
    images = tf.random.uniform((32, size, size, 3), -1, 1, seed=1)
    labels = tf.one_hot(tf.range(32) % 7, 7)

    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(images, training=True))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    for label, function in (("eager", step), ("graph", tf.function(step))):
        for _ in range(3):
            function()
        start = time.perf_counter()
        for _ in range(steps):
            function().numpy()
        milliseconds = (time.perf_counter() - start) / steps * 1000
        print(f"{name}@{size} {label}: {milliseconds:.1f} ms/step, {32000 / milliseconds:.1f} img/s", flush=True)


if __name__ == "__main__":
    main()
