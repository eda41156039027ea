"""Dynamic range quantization: int8 weights, float activations and float I/O; no calibration."""

from __future__ import annotations

from pathlib import Path

from quantflow.core import io
from quantflow.core.spec import DynamicRangeVariant
from quantflow.core.tfenv import tf_modules
from quantflow.variants import ConvertInputs
from quantflow.variants._common import keras_converter, load_model


def convert(inputs: ConvertInputs, variant: DynamicRangeVariant, out: Path) -> Path:
    """Optimize.DEFAULT without a representative dataset is exactly dynamic range quantization."""
    tf, _ = tf_modules()
    converter = keras_converter(load_model(inputs))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return io.write_bytes(out, converter.convert())
