"""Full integer quantization where possible, float kernels where not; the model keeps float I/O."""

from __future__ import annotations

from pathlib import Path

from quantflow.core import io
from quantflow.core.spec import Int8FloatFallbackVariant
from quantflow.core.tfenv import tf_modules
from quantflow.variants import ConvertInputs
from quantflow.variants._common import (
    keras_converter,
    load_model,
    representative_dataset,
)


def convert(inputs: ConvertInputs, variant: Int8FloatFallbackVariant, out: Path) -> Path:
    """A representative dataset without restricting supported_ops lets ops fall back to float."""
    tf, _ = tf_modules()
    converter = keras_converter(load_model(inputs))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset(inputs.calibration)
    return io.write_bytes(out, converter.convert())
