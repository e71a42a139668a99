"""Compute reference class activation maps with Keras for tests/cam.test.ts.

Usage: keras_cam.py OUT_DIR

Builds a fixed small Keras model with seeded weights: two convolutions with
batch norm and ReLU, a 1x1 skip convolution added back, global average
pooling, a dense ReLU layer and a softmax output. Then explains fixed seeded
inputs with Grad-CAM, Grad-CAM++, Eigen-CAM and Score-CAM at three layers.

Files written to OUT_DIR:
- weights.json and weights.bin: every layer's weights as little-endian
  float32, in Keras's get_weights() order, with name, shape and offset (in
  float32 values) per tensor. The Keras model reads its weights back from
  these files, so both sides use the same float32 values.
- inputs.bin: the input batch [n, 16, 16, 3], float32.
- reference.json: probabilities, logits, target classes, and per layer,
  method and target mode the normalised map at layer resolution and the map
  resized to the input.

Gradients are taken of the pre-softmax logit of the target class with
tf.GradientTape, as the Keras Grad-CAM example does after setting the output
layer's activation to None. Every map is ReLU(map) / max(ReLU(map)) (0 where
the maximum is 0), then resized bilinearly with half-pixel centres by
tf.image.resize.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

SIZE = 16
IMAGES = 4
CLASSES = 5
SEED = 20240611
LAYERS = ["relu3", "relu2", "relu1"]


def build_model():
    inputs = keras.Input((SIZE, SIZE, 3), name="input_image")
    x = keras.layers.Conv2D(6, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(epsilon=1e-3, name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    y = keras.layers.Conv2D(8, 3, padding="same", name="conv2")(x)
    y = keras.layers.ReLU(name="relu2")(y)
    skip = keras.layers.Conv2D(8, 1, name="skip")(x)
    z = keras.layers.Add(name="add")([y, skip])
    z = keras.layers.ReLU(name="relu3")(z)
    z = keras.layers.GlobalAveragePooling2D(name="pool")(z)
    z = keras.layers.Dense(12, activation="relu", name="dense1")(z)
    outputs = keras.layers.Dense(CLASSES, activation="softmax", name="probabilities")(z)
    return keras.Model(inputs, outputs, name="cam_reference")


def seeded_weights(model, rng):
    """Draws every weight from a seeded generator; batch-norm statistics are kept plausible."""
    weights = {}
    for layer in model.layers:
        values = []
        for variable in layer.weights:
            name = variable.path.split("/")[-1]
            shape = tuple(variable.shape)
            if name == "gamma":
                value = rng.uniform(0.5, 1.5, shape)
            elif name == "moving_variance":
                value = rng.uniform(0.5, 1.5, shape)
            elif name in ("beta", "moving_mean", "bias"):
                value = rng.normal(0.0, 0.1, shape)
            else:
                fan_in = int(np.prod(shape[:-1]))
                value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
            values.append((name, value.astype(np.float32)))
        if values:
            weights[layer.name] = values
    return weights


def write_weights(out_dir, weights):
    manifest = {"layers": []}
    chunks = []
    offset = 0
    for layer_name, values in weights.items():
        entry = {"name": layer_name, "weights": []}
        for name, value in values:
            entry["weights"].append({"name": name, "shape": list(value.shape), "offset": offset})
            chunks.append(value.astype("<f4").tobytes())
            offset += value.size
        manifest["layers"].append(entry)
    with open(os.path.join(out_dir, "weights.bin"), "wb") as f:
        f.write(b"".join(chunks))
    with open(os.path.join(out_dir, "weights.json"), "w") as f:
        json.dump(manifest, f)


def read_weights(out_dir):
    with open(os.path.join(out_dir, "weights.json")) as f:
        manifest = json.load(f)
    data = np.fromfile(os.path.join(out_dir, "weights.bin"), dtype="<f4")
    weights = {}
    for entry in manifest["layers"]:
        weights[entry["name"]] = [
            data[w["offset"] : w["offset"] + int(np.prod(w["shape"]))].reshape(w["shape"]) for w in entry["weights"]
        ]
    return weights


def normalise(maps):
    """ReLU, then division by each map's maximum; an all-zero map stays zero."""
    maps = np.maximum(maps, 0.0)
    maxima = maps.max(axis=(1, 2), keepdims=True)
    return np.where(maxima > 0, maps / np.where(maxima > 0, maxima, 1.0), 0.0).astype(np.float32)


def upsample(maps):
    resized = tf.image.resize(maps[..., None], (SIZE, SIZE), method="bilinear", antialias=False)
    return resized.numpy()[..., 0]


def grad_cam_weights(activations, grads):
    return grads.mean(axis=(1, 2))


def grad_cam_plus_plus_weights(activations, grads):
    # Equation 19 of Chattopadhyay et al. (2018), as in pytorch-grad-cam's GradCAMPlusPlus.
    g2 = grads**2
    g3 = g2 * grads
    sum_activations = activations.sum(axis=(1, 2), keepdims=True)
    alpha = g2 / (2 * g2 + sum_activations * g3 + 1e-6)
    alpha = np.where(grads != 0, alpha, 0.0)
    return (np.maximum(grads, 0.0) * alpha).sum(axis=(1, 2))


def eigen_cam(activations):
    maps = []
    for image in activations.astype(np.float64):
        h, w, c = image.shape
        x = image.reshape(h * w, c)
        centred = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        projection = centred @ vt[0]
        # The singular vector's sign is arbitrary: orient it along the total activation.
        if projection @ x.sum(axis=1) < 0:
            projection = -projection
        maps.append(projection.reshape(h, w))
    return np.stack(maps).astype(np.float32)


def score_cam_weights(model, inputs, activations, targets):
    n, h, w, c = activations.shape
    weights = np.zeros((n, c), dtype=np.float32)
    for i in range(n):
        per_channel = np.transpose(activations[i], (2, 0, 1))[..., None]
        up = tf.image.resize(per_channel, (SIZE, SIZE), method="bilinear", antialias=False).numpy()
        low = up.min(axis=(1, 2, 3), keepdims=True)
        high = up.max(axis=(1, 2, 3), keepdims=True)
        masks = (up - low) / (high - low + 1e-8)
        probabilities = model(inputs[i : i + 1] * masks, training=False).numpy()[:, targets[i]]
        weights[i] = np.where((high - low).reshape(c) > 0, probabilities, 0.0)
    return weights


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED)

    model = build_model()
    write_weights(out_dir, seeded_weights(model, rng))
    stored = read_weights(out_dir)
    for layer in model.layers:
        if layer.name in stored:
            layer.set_weights(stored[layer.name])

    inputs = rng.uniform(-1.0, 1.0, (IMAGES, SIZE, SIZE, 3)).astype(np.float32)
    inputs.astype("<f4").tofile(os.path.join(out_dir, "inputs.bin"))

    probabilities = model(inputs, training=False).numpy()
    # Logits as in the Keras Grad-CAM example: the same model with the output activation removed.
    model.get_layer("probabilities").activation = None
    logits_model = keras.Model(model.input, [model.get_layer(name).output for name in LAYERS] + [model.output])
    predicted = probabilities.argmax(axis=1)
    # A different class per image, never the predicted one.
    explicit = (predicted + 1 + np.arange(IMAGES) % (CLASSES - 1)) % CLASSES

    result = {
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "size": SIZE,
        "images": IMAGES,
        "classes": CLASSES,
        "probabilities": probabilities.tolist(),
        "predicted": predicted.tolist(),
        "targets": {"predicted": predicted.tolist(), "explicit": explicit.tolist()},
        "maps": {},
    }

    for mode, targets in (("predicted", predicted), ("explicit", explicit)):
        one_hot = tf.one_hot(targets, CLASSES)
        with tf.GradientTape() as tape:
            outputs = logits_model(inputs, training=False)
            layer_outputs, logits = outputs[:-1], outputs[-1]
            score = tf.reduce_sum(logits * one_hot)
        grads = tape.gradient(score, layer_outputs)
        result.setdefault("logits", logits.numpy().tolist())
        for name, activations, gradient in zip(LAYERS, layer_outputs, grads):
            a = activations.numpy()
            g = gradient.numpy()
            raw = {
                "gradcam": np.einsum("nhwc,nc->nhw", a, grad_cam_weights(a, g)),
                "gradcam++": np.einsum("nhwc,nc->nhw", a, grad_cam_plus_plus_weights(a, g)),
            }
            if mode == "predicted":
                raw["eigencam"] = eigen_cam(a)
            model.get_layer("probabilities").activation = keras.activations.softmax
            raw["scorecam"] = np.einsum("nhwc,nc->nhw", a, score_cam_weights(model, inputs, a, targets))
            model.get_layer("probabilities").activation = None
            for method, maps in raw.items():
                layer_maps = normalise(maps)
                result["maps"][f"{name}/{method}/{mode}"] = {
                    "layer": layer_maps.tolist(),
                    "heatmap": upsample(layer_maps).tolist(),
                    "raw_max": np.maximum(maps, 0).max(axis=(1, 2)).tolist(),
                }

    with open(os.path.join(out_dir, "reference.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
