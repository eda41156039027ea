"""Float16 quantization: weights stored as float16 (half the size), computed in float32 on CPU."""

from __future__ import annotations

from pathlib import Path

from quantflow.core import io
from quantflow.core.spec import Float16Variant
from quantflow.core.tfenv import tf_modules
from quantflow.variants import ConvertInputs
from quantflow.variants._common import keras_converter, load_model


def convert(inputs: ConvertInputs, variant: Float16Variant, out: Path) -> Path:
    """Restricting supported_types to float16 is what turns DEFAULT into float16 weights."""
    tf, _ = tf_modules()
    converter = keras_converter(load_model(inputs))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    return io.write_bytes(out, converter.convert())
