#!/usr/bin/env python3
"""The Keras side of `fer bench`: the same backbone, head, input size, batch
size and training images as the toolkit's run, trained and timed the way a
Keras 3 user would write it.

Usage: python scripts/bench_keras.py CONFIG.json   (the file `fer bench` writes)

- Data: tf.data reads the same files, decodes and resizes them in parallel,
  caches the decoded uint8 images in memory, shuffles each epoch, batches,
  augments when the config enables it (RandomRotation 20 degrees,
  RandomTranslation 0.2, RandomFlip horizontal, nearest fill, bilinear),
  applies the backbone's preprocessing and prefetches.
- Model: keras.applications.<Backbone>(include_top=False, weights=None),
  global average pooling, Dense ReLU layers, Dropout, Dense softmax.
  Batch-norm layers are frozen (trainable=False, so inference mode).
- Phase 1 trains the head with the backbone frozen (Adam 1e-3); phase 2 also
  trains the layers the toolkit unfreezes (Adam 1e-4). model.fit with the
  default compile settings: on a CPU-only machine Keras 3.15 runs a
  tf.function graph without XLA.
- Inference: model.predict at batch 1 and 32, and a direct model(x) call.

Prints one line `RESULT {json}` on stdout.
"""
import json
import os
import resource
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

NUM_CLASSES = 7


def build_backbone(name, size):
    shape = (size, size, 3)
    apps = keras.applications
    if name.startswith("MobileNetV2"):
        alpha = float(name.split("-")[1]) if "-" in name else 1.0
        return apps.MobileNetV2(include_top=False, weights=None, input_shape=shape, alpha=alpha)
    if name.startswith("MobileNet"):
        alpha = float(name.split("-")[1]) if "-" in name else 1.0
        return apps.MobileNet(include_top=False, weights=None, input_shape=shape, alpha=alpha)
    builders = {
        "VGG16": apps.VGG16,
        "VGG19": apps.VGG19,
        "ResNet50V2": apps.ResNet50V2,
        "ResNet101V2": apps.ResNet101V2,
        "EfficientNetB0": apps.EfficientNetB0,
        "EfficientNetB1": apps.EfficientNetB1,
        "EfficientNetB2": apps.EfficientNetB2,
        "ConvNeXtTiny": apps.ConvNeXtTiny,
        "ConvNeXtSmall": apps.ConvNeXtSmall,
    }
    if name not in builders:
        raise SystemExit(f"bench_keras.py: no Keras application for backbone {name!r}; known: {', '.join(sorted(builders))}, MobileNet-<alpha>, MobileNetV2-<alpha>")
    return builders[name](include_top=False, weights=None, input_shape=shape)


def preprocess_fn(mode):
    if mode == "tf":
        return lambda x: x / 127.5 - 1.0
    if mode == "caffe":
        mean = tf.constant([103.939, 116.779, 123.68])
        return lambda x: tf.reverse(x, axis=[-1]) - mean
    if mode == "torch":
        mean = tf.constant([0.485, 0.456, 0.406])
        std = tf.constant([0.229, 0.224, 0.225])
        return lambda x: (x / 255.0 - mean) / std
    return lambda x: x


def dataset(config):
    size = config["inputSize"]
    paths = [f["path"] for f in config["trainFiles"]]
    labels = [f["label"] for f in config["trainFiles"]]

    def load(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        image = tf.image.resize(image, [size, size])
        image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        return image, tf.one_hot(label, NUM_CLASSES)

    augment = keras.Sequential(
        [
            keras.layers.RandomRotation(20 / 360, fill_mode="nearest", interpolation="bilinear", seed=config["seed"]),
            keras.layers.RandomTranslation(0.2, 0.2, fill_mode="nearest", interpolation="bilinear", seed=config["seed"] + 1),
            keras.layers.RandomFlip("horizontal", seed=config["seed"] + 2),
        ]
    )
    preprocess = preprocess_fn(config["preprocessing"])
    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).cache()
    ds = ds.shuffle(len(paths), seed=config["seed"], reshuffle_each_iteration=True)
    ds = ds.batch(config["batchSize"])
    if config["augment"]:
        ds = ds.map(lambda x, y: (augment(tf.cast(x, tf.float32), training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(lambda x, y: (preprocess(tf.cast(x, tf.float32)), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


class EpochTimer(keras.callbacks.Callback):
    """Wall time of each epoch's training steps (no validation runs in fit)."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


def phase_result(seconds, images):
    timed = seconds[1:]
    return {
        "imagesPerSecond": images * len(timed) / sum(timed) if timed else float("nan"),
        "firstEpochImagesPerSecond": images / seconds[0],
        "epochSeconds": seconds,
    }


def train_phase(model, ds, learning_rate, epochs):
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="categorical_crossentropy", metrics=["accuracy"])
    timer = EpochTimer()
    model.fit(ds, epochs=epochs, verbose=0, callbacks=[timer])
    return timer.seconds


def time_calls(call, runs):
    for _ in range(3):
        call(1)
    single = []
    for _ in range(runs):
        start = time.perf_counter()
        call(1)
        single.append((time.perf_counter() - start) * 1000)
    call(32)
    batched = []
    for _ in range(max(3, round(runs / 5))):
        start = time.perf_counter()
        call(32)
        batched.append(time.perf_counter() - start)
    return {"batch1Ms": statistics.median(single), "batch32ImagesPerSecond": 32 / statistics.median(batched)}


def flat_layers(layer):
    """Return the layer and every layer nested in it (ConvNeXt nests its stem and downsampling layers in Sequential models)."""
    found = [layer]
    for child in getattr(layer, "layers", []):
        found.extend(flat_layers(child))
    return found


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: python scripts/bench_keras.py CONFIG.json (written by fer bench)")
    with open(sys.argv[1], encoding="utf-8") as handle:
        config = json.load(handle)
    keras.utils.set_random_seed(config["seed"])
    size = config["inputSize"]

    base = build_backbone(config["backbone"], size)
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(base.output)
    for i, units in enumerate(config["dense"]):
        x = keras.layers.Dense(units, activation="relu", name=f"head_dense_{i + 1}")(x)
    if config["dropout"] > 0:
        x = keras.layers.Dropout(config["dropout"], name="head_dropout")(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="emotion_probabilities")(x)
    model = keras.Model(base.input, outputs)
    layers = [layer for top in model.layers for layer in flat_layers(top)]
    base_layers = set(layer.name for top in base.layers for layer in flat_layers(top))
    ds = dataset(config)
    images = len(config["trainFiles"])
    notes = []

    # Phase 1: the head alone.
    for layer in layers:
        layer.trainable = layer.name not in base_layers
    phase1 = train_phase(model, ds, 1e-3, config["epochs"])

    # Phase 2: the layers the toolkit unfreezes (matched by Keras layer name), batch norm always frozen.
    unfrozen = set(config["phase2TrainableLayers"])
    missing = sorted(unfrozen - set(layer.name for layer in layers))
    if missing:
        notes.append(f"{len(missing)} layers unfrozen by the toolkit do not exist in Keras's model: {', '.join(missing[:5])}")
    for layer in layers:
        if getattr(layer, "layers", None):
            # A container trains when any layer inside it does; its children decide.
            layer.trainable = True
        elif isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
        elif layer.name in base_layers:
            layer.trainable = config["unfreeze"] == "all" or layer.name in unfrozen
        else:
            layer.trainable = True
    phase2 = train_phase(model, ds, 1e-4, config["epochs"])
    notes.append(f"jit_compile={model.jit_compile}, {len(model.trainable_weights)} trainable tensors in phase 2")

    low, high = (0.0, 255.0) if config["preprocessing"] == "none" else (-1.0, 1.0)
    rng = np.random.default_rng(config["seed"])
    inputs = {n: rng.uniform(low, high, (n, size, size, 3)).astype(np.float32) for n in (1, 32)}
    inference = {
        "keras-predict": time_calls(lambda n: model.predict(inputs[n], batch_size=n, verbose=0), config["inferenceRuns"]),
        "keras-call": time_calls(lambda n: model(inputs[n], training=False).numpy(), config["inferenceRuns"]),
    }

    result = {
        "framework": "keras",
        "backbone": config["backbone"],
        "inputSize": size,
        "phase1": phase_result(phase1, images),
        "phase2": phase_result(phase2, images),
        "inference": inference,
        # Linux reports ru_maxrss in KiB.
        "peakRssBytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "versions": {"python": sys.version.split()[0], "tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__},
        "notes": notes,
    }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
