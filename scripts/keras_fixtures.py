"""Write Keras reference fixtures for the backbone fidelity test.

For each backbone name, builds the Keras Applications model (include_top=False,
weights=None, except EfficientNet: see _efficientnet) at a small input size,
gives it seeded random weights, and writes into OUT/<name>/:

  weights.h5          legacy HDF5 layout (root attribute layer_names), the
                      layout of the files Keras Applications publishes
  model.weights.h5    Keras 3 layout (layers/<class>/vars/<i>)
  model.keras         Keras 3 archive, only for names given with --keras
  inputs.bin          float32 [n, size, size, 3] raw RGB in [0, 255]
  outputs.bin         float32 model(preprocess_input(inputs)), C order
  meta.json           shapes, parameter count, layer and weight names, and
                      the largest absolute output

Batch normalization gets non-trivial values: gamma and beta are random, and
the moving mean and variance are the statistics of the layer's input on a
calibration batch, perturbed at random. Activations therefore stay of order 1
through deep networks, which keeps a 1e-4 absolute tolerance meaningful.
EfficientNet is the exception (see _efficientnet).

Usage: .venv/bin/python scripts/keras_fixtures.py --out DIR [--size 64]
       [--batch 2] [--seed 1234] [--keras NAME]... NAME [NAME ...]
Generate fixtures in a temporary folder only; they are hundreds of MB.
"""

import argparse
import json
import os
import sys
import time
import zlib
from dataclasses import dataclass
from typing import Callable
from unittest import mock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras.src.applications import efficientnet  # noqa: E402
from keras.src.legacy.saving import legacy_h5_format  # noqa: E402

A = keras.applications


@dataclass(frozen=True)
class Backbone:
    """A Keras Applications constructor and its preprocess_input.

    prepare, when set, adjusts the random weights after
    randomize_constant_weights and before batch-norm calibration.
    layer_names, when set, lists the layer names our build has, for a Keras
    model whose structure ours flattens or extends (see convnext_layer_names).
    """

    build: Callable[[tuple], keras.Model]
    preprocess: Callable[[np.ndarray], np.ndarray]
    prepare: Callable[[keras.Model, np.random.Generator], None] | None = None
    layer_names: Callable[[keras.Model], list] | None = None


def _app(constructor, **kwargs):
    return lambda shape: constructor(
        include_top=False, weights=None, input_shape=shape, **kwargs
    )


# Registry names (lib/models/catalog.ts) to Keras constructors; add a line per
# new backbone.
BACKBONES: dict[str, Backbone] = {
    "MobileNet-0.25": Backbone(
        _app(A.MobileNet, alpha=0.25), A.mobilenet.preprocess_input
    ),
    "MobileNet-0.5": Backbone(
        _app(A.MobileNet, alpha=0.5), A.mobilenet.preprocess_input
    ),
    "MobileNet-0.75": Backbone(
        _app(A.MobileNet, alpha=0.75), A.mobilenet.preprocess_input
    ),
    "MobileNet": Backbone(
        _app(A.MobileNet, alpha=1.0), A.mobilenet.preprocess_input
    ),
    "MobileNetV2-0.35": Backbone(
        _app(A.MobileNetV2, alpha=0.35), A.mobilenet_v2.preprocess_input
    ),
    "MobileNetV2": Backbone(
        _app(A.MobileNetV2, alpha=1.0), A.mobilenet_v2.preprocess_input
    ),
    "VGG16": Backbone(_app(A.VGG16), A.vgg16.preprocess_input),
    "VGG19": Backbone(_app(A.VGG19), A.vgg19.preprocess_input),
    "ResNet50V2": Backbone(_app(A.ResNet50V2), A.resnet_v2.preprocess_input),
    "ResNet101V2": Backbone(_app(A.ResNet101V2), A.resnet_v2.preprocess_input),
    "ResNet152V2": Backbone(_app(A.ResNet152V2), A.resnet_v2.preprocess_input),
}


def _efficientnet(constructor):
    """EfficientNet as Keras builds it for weights="imagenet", which adds a
    per-channel Rescaling after the Normalization that weights=None leaves
    out. Our build always has it, so the download and the weight loading are
    patched out and the model keeps its initial weights.

    NOTE: after calibrate_batch_norm, EfficientNet outputs at 64x64 reach
    |y| of about 1e3 (B0) to 2e7 (B5), not order 1. Our outputs match Keras's
    eager run exactly (difference 0), but at that scale the 1e-4 absolute
    tolerance would not absorb ordinary float32 rounding."""

    def build(shape):
        with mock.patch.object(efficientnet.file_utils, "get_file", return_value="unused"), mock.patch.object(
            efficientnet.Functional, "load_weights", lambda self, path: None
        ):
            return constructor(include_top=False, weights="imagenet", input_shape=shape)

    return build


def randomize_layer_scale(model: keras.Model, rng: np.random.Generator):
    """ConvNeXt's LayerScale starts at 1e-6, which would leave every block's
    residual branch below the tolerance; U(0.1, 0.5) makes each block count."""
    for layer in model.layers:
        if type(layer).__name__ == "LayerScale":
            for variable in layer.weights:
                variable.assign(rng.uniform(0.1, 0.5, size=variable.shape).astype(np.float32))


def convnext_layer_names(model: keras.Model) -> list:
    """Keras's ConvNeXt layer names as our build has them: the layers of the
    stem and downsampling Sequentials in place of the Sequentials, and the
    residual sum, an operation rather than a layer in Keras, as the Add layer
    <block>_add after each block's <block>_identity."""
    names = []
    for layer in model.layers:
        if isinstance(layer, keras.Sequential):
            names.extend(inner.name for inner in layer.layers)
        else:
            names.append(layer.name)
        if layer.name.endswith("_identity"):
            names.append(layer.name[: -len("_identity")] + "_add")
    return names


for _variant in ["B0", "B1", "B2", "B3", "B4", "B5", "B6", "B7"]:
    BACKBONES[f"EfficientNet{_variant}"] = Backbone(
        _efficientnet(getattr(A, f"EfficientNet{_variant}")), A.efficientnet.preprocess_input
    )
for _variant in ["Tiny", "Small", "Base"]:
    BACKBONES[f"ConvNeXt{_variant}"] = Backbone(
        _app(getattr(A, f"ConvNeXt{_variant}")),
        A.convnext.preprocess_input,
        prepare=randomize_layer_scale,
        layer_names=convnext_layer_names,
    )


def name_seed(seed: int, name: str) -> int:
    """A per-backbone seed that does not depend on the order of the names."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % 2**31


def random_images(rng: np.random.Generator, count: int, size: int):
    """Smooth random RGB images in [0, 255]: noise plus a colour gradient."""
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    images = np.empty((count, size, size, 3), np.float32)
    for i in range(count):
        base = rng.uniform(0, 255, size=3).astype(np.float32)
        slope = rng.uniform(-100, 100, size=(2, 3)).astype(np.float32)
        gradient = ramp[:, None, None] * slope[0] + ramp[None, :, None] * slope[1]
        noise = rng.normal(0, 30, size=(size, size, 3)).astype(np.float32)
        images[i] = base + gradient + noise
    return np.clip(images, 0, 255).astype(np.float32)


def randomize_constant_weights(model: keras.Model, rng: np.random.Generator):
    """Replace constant-initialised weights outside batch norm (biases, layer
    norm scales) with random values; kernels keep Keras's seeded initialisers.
    Zeros become N(0, 0.05) and a constant c becomes c * U(0.5, 1.5)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            continue
        for variable in layer.weights:
            value = keras.ops.convert_to_numpy(variable)
            if not np.issubdtype(value.dtype, np.floating) or value.size == 0:
                continue
            first = value.flat[0]
            if not np.all(value == first):
                continue
            if first == 0:
                new = rng.normal(0, 0.05, size=value.shape)
            else:
                new = first * rng.uniform(0.5, 1.5, size=value.shape)
            variable.assign(new.astype(value.dtype))


def calibrate_batch_norm(model, images, rng: np.random.Generator):
    """Give every BatchNormalization random gamma and beta, and a moving mean
    and variance near the statistics of its input on `images`, set in
    topological order while the batch runs through the model in eager mode."""
    originals = {}

    def calibrating_call(layer, original):
        def call(inputs, *args, **kwargs):
            x = keras.ops.convert_to_numpy(inputs)
            axes = tuple(i for i in range(x.ndim) if i != x.ndim - 1)
            mean = x.mean(axis=axes)
            variance = x.var(axis=axes)
            std = np.sqrt(variance + 1e-6)
            channels = mean.shape
            layer.moving_mean.assign(
                (mean + rng.normal(0, 0.1, channels) * std).astype(np.float32)
            )
            layer.moving_variance.assign(
                (variance * rng.uniform(0.5, 2.0, channels) + 1e-3).astype(
                    np.float32
                )
            )
            if layer.gamma is not None:
                layer.gamma.assign(rng.uniform(0.5, 1.5, channels).astype(np.float32))
            if layer.beta is not None:
                layer.beta.assign(rng.uniform(-0.2, 0.2, channels).astype(np.float32))
            return original(inputs, *args, **kwargs)

        return call

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            originals[layer] = layer.call
            layer.call = calibrating_call(layer, layer.call)
    try:
        model(images, training=False)
    finally:
        for layer, original in originals.items():
            layer.call = original


def write_fixture(name: str, out_dir: str, size: int, batch: int, seed: int, with_archive: bool):
    backbone = BACKBONES[name]
    rng = np.random.default_rng(name_seed(seed, name))
    keras.backend.clear_session()
    keras.utils.set_random_seed(name_seed(seed, name))
    model = backbone.build((size, size, 3))

    calibration = backbone.preprocess(random_images(rng, 4, size).copy())
    randomize_constant_weights(model, rng)
    if backbone.prepare is not None:
        backbone.prepare(model, rng)
    for layer in model.layers:
        # Normalization copies its mean and variance when built; Keras's weight
        # loaders call finalize_state to refresh the copies, and so must this script.
        if hasattr(layer, "finalize_state"):
            layer.finalize_state()
    calibrate_batch_norm(model, calibration, rng)

    inputs = random_images(rng, batch, size)
    # preprocess_input may scale a float array in place, so it gets a copy.
    outputs = keras.ops.convert_to_numpy(
        model(backbone.preprocess(inputs.copy()), training=False)
    ).astype(np.float32)

    folder = os.path.join(out_dir, name)
    os.makedirs(folder, exist_ok=True)
    with h5py.File(os.path.join(folder, "weights.h5"), "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    model.save_weights(os.path.join(folder, "model.weights.h5"))
    if with_archive:
        model.save(os.path.join(folder, "model.keras"))
    inputs.tofile(os.path.join(folder, "inputs.bin"))
    outputs.tofile(os.path.join(folder, "outputs.bin"))

    meta = {
        "name": name,
        "keras_version": keras.__version__,
        "seed": seed,
        "input_shape": list(inputs.shape),
        "output_shape": list(outputs.shape),
        "output_max_abs": float(np.abs(outputs).max()),
        "params": int(model.count_params()),
        "layer_names": (
            backbone.layer_names(model)
            if backbone.layer_names is not None
            else [layer.name for layer in model.layers]
        ),
        "weights": [
            {"name": v.path, "shape": list(v.shape)} for v in model.weights
        ],
        "files": sorted(os.listdir(folder)),
    }
    with open(os.path.join(folder, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return meta


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="+", help=f"backbones: {', '.join(BACKBONES)}")
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--size", type=int, default=64, help="input height and width in pixels (default 64)")
    parser.add_argument("--batch", type=int, default=2, help="number of input images (default 2)")
    parser.add_argument("--seed", type=int, default=1234, help="random seed (default 1234)")
    parser.add_argument("--keras", action="append", default=[], metavar="NAME", help="a backbone that also gets a .keras archive (repeatable)")
    args = parser.parse_args(argv)

    unknown = [n for n in [*args.names, *args.keras] if n not in BACKBONES]
    if unknown:
        parser.error(f"unknown backbone(s) {', '.join(unknown)}; known: {', '.join(BACKBONES)}")

    os.makedirs(args.out, exist_ok=True)
    for name in args.names:
        start = time.time()
        meta = write_fixture(name, args.out, args.size, args.batch, args.seed, name in args.keras)
        print(
            f"{name}: {meta['params']} parameters, output {meta['output_shape']} "
            f"(max |y| {meta['output_max_abs']:.3g}), {time.time() - start:.1f} s",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
