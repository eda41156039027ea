"""Full integer quantization where possible, float kernels where not; the model keeps float I/O."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from quantflow.core.specbase import Expected, VariantBase
from quantflow.core.tfenv import tf_modules
from quantflow.variants import ConvertInputs
from quantflow.variants._common import (
    SAVED_MODEL,
    representative_dataset,
    saved_model_converter,
    write_tflite,
)


class Int8FloatFallbackVariant(VariantBase):
    kind: Literal["int8_float_fallback"] = Field(
        description="Full integer with float fallback for ops without int8 kernels; float I/O."
    )

    needs_calibration: ClassVar[bool] = True
    requires: ClassVar[frozenset[str]] = SAVED_MODEL
    order: ClassVar[int] = 30

    def promise(self) -> Expected:
        """Int8 weights and float I/O; float weights may remain where ops fell back."""
        return Expected("float32", "int8")


def convert(inputs: ConvertInputs, variant: Int8FloatFallbackVariant, out: Path) -> Path:
    """A representative dataset without restricting supported_ops lets ops fall back to float."""
    tf, _ = tf_modules()
    converter = saved_model_converter(inputs)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset(inputs)
    return write_tflite(converter, out, inputs)
