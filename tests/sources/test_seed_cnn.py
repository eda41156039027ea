"""The seed CNN source: data it cannot take is refused in the spec's words, before TensorFlow."""

from __future__ import annotations

import sys

import pytest

from quantflow.core.errors import ModelError
from quantflow.sources.seed_cnn import SeedCnnModel, build


def test_seed_cnn_refuses_1d_data_without_importing_tensorflow():
    """The shape check runs before TensorFlow is imported (so it is cheap and early)."""
    had_tf = "tensorflow" in sys.modules
    with pytest.raises(ModelError, match=r"seed_cnn expects 2-D images \(H, W\), the data has "
                                         r"\(64,\)"):
        build(SeedCnnModel(arch="seed_cnn"), (64,), 10)
    with pytest.raises(ModelError, match="kernel_size 11 and pool_size 2 needs images of at "
                                         "least 12x12"):
        build(SeedCnnModel(arch="seed_cnn", kernel_size=11), (8, 8), 10)
    assert had_tf or "tensorflow" not in sys.modules
