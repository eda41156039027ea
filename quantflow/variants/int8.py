"""Integer-only quantization (TFLITE_BUILTINS_INT8), for int8-only accelerators and MCUs."""

from __future__ import annotations

from pathlib import Path

from quantflow.core import io
from quantflow.core.spec import Int8Variant
from quantflow.core.tfenv import tf_modules
from quantflow.variants import ConvertInputs
from quantflow.variants._common import (
    keras_converter,
    load_model,
    representative_dataset,
    set_io_type,
)


def convert(inputs: ConvertInputs, variant: Int8Variant, out: Path) -> Path:
    """Only int8 builtins are allowed, so an op without an int8 kernel fails the conversion
    (loudly, with the converter's message) instead of silently running in float."""
    tf, _ = tf_modules()
    converter = keras_converter(load_model(inputs))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset(inputs.calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    set_io_type(converter, variant.io_type)
    return io.write_bytes(out, converter.convert())
