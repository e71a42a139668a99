"""Apply Keras Applications' input preprocessing for tests/preprocess.test.ts.

Reads {"batch": N x H x W x 3 nested lists, "modes": ["tf", "caffe", "torch"]}
as JSON on stdin and writes {mode: N x H x W x 3 nested lists} as JSON on
stdout, each from keras.applications.imagenet_utils.preprocess_input on a
float32 copy of the batch with data_format="channels_last".
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from keras.applications import imagenet_utils  # noqa: E402


def main():
    request = json.load(sys.stdin)
    batch = np.asarray(request["batch"], dtype=np.float32)
    result = {}
    for mode in request["modes"]:
        # preprocess_input may modify a float array in place, so each mode gets a copy.
        output = imagenet_utils.preprocess_input(batch.copy(), data_format="channels_last", mode=mode)
        result[mode] = np.asarray(output, dtype=np.float64).tolist()
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
