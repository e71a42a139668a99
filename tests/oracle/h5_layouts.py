"""Write small Keras weight files in every layout for tests/h5.test.ts.

Usage: h5_layouts.py OUT_DIR

Writes with h5py only (no TensorFlow), imitating the files Keras writes:

- keras2.h5: legacy layout as Keras 2 wrote it and Keras Applications
  publishes it, with fixed-length byte-string attributes and ":0" weight
  suffixes. It has a layer without weights, a Keras 1 layer named as in the
  published VGG16 file ("block1_conv1_W_1:0") and a Keras 1 batch norm
  ("old_bn_running_std").
- chunked.h5: legacy layout whose layer_names attribute is split into
  layer_names0 and layer_names1, as Keras does above HDF5's 64 kB header limit.
- full_model.h5: a model.save() file, with the legacy layout inside the
  model_weights group next to optimizer_weights.
- keras3_depthwise.weights.h5: Keras 3 layout with a DepthwiseConv2D, whose
  kernel Keras 3 stores as its variable 0, and a Dropout seed generator.
- keras3_unknown.weights.h5: Keras 3 layout with an unregistered layer class.
- keras3_unnamed.weights.h5: Keras 3 layout without the vars "name" attribute.
- no_layout.h5: an HDF5 file that contains no Keras weights.
- not_hdf5.h5: a text file.
- no_weights.keras: a zip archive without model.weights.h5.

values.json maps every "layer/weight" key the reader should return to the
flattened float values written for it.
"""

import json
import os
import sys
import zipfile

import h5py
import numpy as np


def values(rng, shape):
    return rng.normal(size=shape).astype(np.float32)


def fixed(strings):
    return np.array([s.encode() for s in strings], dtype=f"S{max(len(s) for s in strings) if strings else 1}")


def main(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(7)
    expected = {}

    def write_layer(root, layer, weights):
        group = root.create_group(layer)
        group.attrs["weight_names"] = fixed([name for name, _, _ in weights])
        for name, value, key in weights:
            group.create_dataset(name, data=value)
            if key is not None:
                expected[key] = value.ravel().tolist()

    with h5py.File(os.path.join(out, "keras2.h5"), "w") as f:
        f.attrs["keras_version"] = b"2.2.4"
        f.attrs["backend"] = b"tensorflow"
        f.attrs["layer_names"] = fixed(["input_1", "conv", "bn", "pool", "block1_conv1", "old_bn"])
        write_layer(f, "input_1", [])
        write_layer(
            f,
            "conv",
            [
                ("conv/kernel:0", values(rng, (3, 3, 3, 4)), "conv/kernel"),
                ("conv/bias:0", values(rng, (4,)), "conv/bias"),
            ],
        )
        write_layer(
            f,
            "bn",
            [
                (f"bn/{name}:0", values(rng, (4,)), f"bn/{name}")
                for name in ["gamma", "beta", "moving_mean", "moving_variance"]
            ],
        )
        write_layer(f, "pool", [])
        write_layer(
            f,
            "block1_conv1",
            [
                ("block1_conv1_W_1:0", values(rng, (3, 3, 4, 2)), "block1_conv1/kernel"),
                ("block1_conv1_b_1:0", values(rng, (2,)), "block1_conv1/bias"),
            ],
        )
        write_layer(
            f,
            "old_bn",
            [
                ("old_bn_gamma:0", values(rng, (2,)), "old_bn/gamma"),
                ("old_bn_beta:0", values(rng, (2,)), "old_bn/beta"),
                ("old_bn_running_mean:0", values(rng, (2,)), "old_bn/moving_mean"),
                ("old_bn_running_std:0", values(rng, (2,)), "old_bn/moving_variance"),
            ],
        )

    with h5py.File(os.path.join(out, "chunked.h5"), "w") as f:
        f.attrs["layer_names0"] = fixed(["first"])
        f.attrs["layer_names1"] = fixed(["second"])
        for layer in ["first", "second"]:
            group = f.create_group(layer)
            group.attrs["weight_names"] = fixed([f"{layer}/kernel:0"])
            group.create_dataset(f"{layer}/kernel:0", data=np.ones((2, 2), np.float32))

    with h5py.File(os.path.join(out, "full_model.h5"), "w") as f:
        f.attrs["model_config"] = b"{}"
        weights = f.create_group("model_weights")
        weights.attrs["layer_names"] = fixed(["dense"])
        group = weights.create_group("dense")
        group.attrs["weight_names"] = fixed(["dense/kernel:0", "dense/bias:0"])
        group.create_dataset("dense/kernel:0", data=np.full((3, 2), 0.5, np.float32))
        group.create_dataset("dense/bias:0", data=np.zeros((2,), np.float64))
        f.create_group("optimizer_weights").create_dataset("iterations:0", data=np.int64(3))

    with h5py.File(os.path.join(out, "keras3_depthwise.weights.h5"), "w") as f:
        f.create_group("vars").attrs["name"] = "model"
        dw = f.create_group("layers/depthwise_conv2d/vars")
        dw.attrs["name"] = "conv_dw_1"
        dw.create_dataset("0", data=np.full((3, 3, 4, 1), 2.0, np.float32))
        dense = f.create_group("layers/dense_1/vars")
        dense.attrs["name"] = "logits"
        dense.create_dataset("0", data=np.full((4, 3), 1.5, np.float32))
        dense.create_dataset("1", data=np.full((3,), -1.0, np.float32))
        norm = f.create_group("layers/normalization/vars")
        norm.attrs["name"] = "normalization"
        norm.create_dataset("0", data=np.zeros((3,), np.float32))
        norm.create_dataset("1", data=np.ones((3,), np.float32))
        norm.create_dataset("2", data=np.int64(12))
        f.create_group("layers/dropout/vars").attrs["name"] = "dropout"
        seed = f.create_group("layers/dropout/seed_generator/vars")
        seed.attrs["name"] = "seed_generator"
        seed.create_dataset("0", data=np.array([1, 2], np.uint32))
        f.create_group("optimizer/vars").create_dataset("0", data=np.int64(5))

    with h5py.File(os.path.join(out, "keras3_unknown.weights.h5"), "w") as f:
        group = f.create_group("layers/my_custom_layer/vars")
        group.attrs["name"] = "custom"
        group.create_dataset("0", data=np.ones((2,), np.float32))

    with h5py.File(os.path.join(out, "keras3_unnamed.weights.h5"), "w") as f:
        f.create_group("layers/conv2d/vars").create_dataset("0", data=np.ones((1, 1, 1, 1), np.float32))

    with h5py.File(os.path.join(out, "no_layout.h5"), "w") as f:
        f.create_dataset("x", data=np.arange(3))

    with open(os.path.join(out, "not_hdf5.h5"), "w") as f:
        f.write("not an HDF5 file\n")

    with zipfile.ZipFile(os.path.join(out, "no_weights.keras"), "w") as z:
        z.writestr("config.json", "{}")

    with open(os.path.join(out, "values.json"), "w") as f:
        json.dump(expected, f)


if __name__ == "__main__":
    main(sys.argv[1])
