"""Import TensorFlow the one way that works with tfmot: Keras 2 through tf_keras.

Everything that needs TensorFlow calls :func:`tf_modules` inside the function, never at module
level, so `quantflow validate`, `--help` and a no-op run never pay the multi-second import.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType


def configure_env() -> None:
    """Environment TensorFlow reads at import time; harmless to call many times."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


@contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """TensorFlow's C++ code prints CUDA/oneDNN notices to fd 2 before its logging is set up
    (TF_CPP_MIN_LOG_LEVEL cannot silence them); hide them during the import only."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


quiet_native_stderr = _quiet_native_stderr  # for callers whose first model build prints (cuInit)


def tf_modules() -> tuple[ModuleType, ModuleType]:
    """Return (tensorflow, tf_keras) configured for Keras 2."""
    configure_env()
    if "tensorflow" not in sys.modules and not os.environ.get("QUANTFLOW_TF_VERBOSE"):
        with _quiet_native_stderr():
            import tensorflow  # noqa: F401
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
