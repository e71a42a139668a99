"""Apply Keras's legacy affine augmentation for tests/augment.test.ts.

Reads {"images": [H x W x C nested lists], "cases": [{"image", "theta", "tx",
"ty", "flip"}]} as JSON on stdin. Each case runs
keras.src.legacy.preprocessing.image.apply_affine_transform with channels
last, bilinear sampling (order=1) and fill_mode="nearest", then mirrors the
columns when "flip" is true, in the order ImageDataGenerator.apply_transform
uses. The parameters are in Keras's convention: theta in degrees, tx shifts
along the column axis and ty along the row axis (see apply_affine_transform,
which swaps the axes before calling scipy.ndimage.affine_transform). Writes
{"outputs": [H x W x C nested lists]} as JSON on stdout.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from keras.src.legacy.preprocessing.image import apply_affine_transform  # noqa: E402


def main():
    request = json.load(sys.stdin)
    images = [np.asarray(image, dtype=np.float64) for image in request["images"]]
    outputs = []
    for case in request["cases"]:
        x = apply_affine_transform(
            images[case["image"]],
            theta=case["theta"],
            tx=case["tx"],
            ty=case["ty"],
            row_axis=0,
            col_axis=1,
            channel_axis=2,
            fill_mode="nearest",
            order=1,
        )
        if case["flip"]:
            x = x[:, ::-1, :]
        outputs.append(x.tolist())
    json.dump({"outputs": outputs}, sys.stdout)


if __name__ == "__main__":
    main()
