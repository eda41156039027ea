"""Import TensorFlow the one way that works with tfmot: Keras 2 through tf_keras.

Everything that needs TensorFlow calls :func:`tf_modules` inside the function, never at module
level, so `quantflow validate`, `--help` and a no-op run never pay the multi-second import.
"""

from __future__ import annotations

import os
from types import ModuleType


def configure_env() -> None:
    """Environment TensorFlow reads at import time; harmless to call many times."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def tf_modules() -> tuple[ModuleType, ModuleType]:
    """Return (tensorflow, tf_keras) configured for Keras 2."""
    configure_env()
    import tensorflow as tf
    import tf_keras

    tf.get_logger().setLevel("ERROR")
    return tf, tf_keras


def versions() -> dict[str, str]:
    """Installed versions of the conversion stack, for manifests (no heavy imports)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out
