"""The realistic workload's data and model (issue #14): MNIST padded to 32x32 and tiled to three
channels, for a MobileNetV2 (alpha 0.35) built from tf_keras.applications without weights.

The data is written once per benchmark into its temp folder as an .npz (quantflow's `npz`
dataset source; the `idx` source cannot pad or tile, and MobileNetV2 needs at least 32x32x3),
and the plain script reads the IDX files through the same function, so both see the same pixels.
The builder is a file in the workspace (`model.builder`), the way a team brings its own network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from plain_script import read_idx  # the plain scripts and quantflow's input read the same bytes

IMAGES, LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"
ALPHA = 0.35
BN_MOMENTUM = 0.9

BUILDER_MODULE = "nets.mobilenet"
BUILDER = f"{BUILDER_MODULE}:mobilenet_v2"
BUILDER_SOURCE = '''"""MobileNetV2 for 32x32x3 inputs, untrained: the realistic model."""

import tf_keras as keras


def mobilenet_v2(input_shape, num_classes, alpha=0.35, bn_momentum=0.9):
    """bn_momentum: Keras' 0.999 leaves the moving statistics mostly at their initial values
    after one short epoch (every model then scores at chance); null keeps Keras' value."""
    model = keras.applications.MobileNetV2(alpha=alpha, input_shape=tuple(input_shape),
                                           weights=None, classes=num_classes)
    if bn_momentum is not None:
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = bn_momentum
    return model
'''


def mnist32(data: Path) -> tuple[np.ndarray, np.ndarray]:
    """All 10,000 images as (N, 32, 32, 3) uint8 (2 zero pixels on every side, the grey value
    in each channel) and their int64 labels: raw pixels, so normalisation stays the reader's."""
    images = np.pad(read_idx(data / IMAGES), ((0, 0), (2, 2), (2, 2)))
    return (np.repeat(images[..., None], 3, axis=-1),
            read_idx(data / LABELS).astype(np.int64))


NPZ = "data/mnist32.npz"  # in the workspace, as a team keeps its prepared data


def write_workspace_files(ws: Path, data: Path) -> None:
    """The builder module and the dataset (.npz, keys x and y) inside the workspace ``ws``."""
    nets = ws / "nets"
    nets.mkdir(parents=True, exist_ok=True)
    (nets / "__init__.py").write_text("")
    (nets / "mobilenet.py").write_text(BUILDER_SOURCE)
    (ws / NPZ).parent.mkdir(parents=True, exist_ok=True)
    x, y = mnist32(data)
    np.savez(ws / NPZ, x=x, y=y)
