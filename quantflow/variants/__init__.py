"""Quantization variant kinds: one module per kind, registered in the table below.

Each module exposes ``convert(inputs: ConvertInputs, variant, out: Path) -> Path`` that writes
one .tflite file to ``out`` and returns it. Adding a kind = one new module + one row in
``REGISTRY`` + one class in the ``Variant`` union of ``quantflow.core.spec``;
``tests/variants/test_registry.py`` checks that the three agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

from quantflow.core.spec import TrainSpec


@dataclass(frozen=True)
class ConvertInputs:
    """Files a converter may read; all produced by earlier steps."""

    trained: Path  # tf_keras model file (.keras)
    saved_model: Path  # SavedModel directory of the same model
    calibration: Path  # .npz with key "x": float32 representative inputs
    dataset: Path  # .npz with x_train, y_train, x_test, y_test (normalised float32 / int64)
    train: TrainSpec  # training settings (QAT fine-tunes with them)


# kind -> module under quantflow.variants (imported lazily: modules import TensorFlow inside).
REGISTRY: dict[str, str] = {
    "dynamic_range": "quantflow.variants.dynamic_range",
    "float16": "quantflow.variants.float16",
    "int8_float_fallback": "quantflow.variants.int8_float_fallback",
    "int8": "quantflow.variants.int8",
    "int16x8": "quantflow.variants.int16x8",
    "qat": "quantflow.variants.qat",
}


def converter(kind: str) -> Callable[[ConvertInputs, Any, Path], Path]:
    """The convert function registered for ``kind``."""
    try:
        module = REGISTRY[kind]
    except KeyError:
        raise KeyError(f"no converter for kind {kind!r}; known: {', '.join(REGISTRY)}") from None
    return import_module(module).convert
