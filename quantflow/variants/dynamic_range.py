"""Dynamic range quantization: int8 weights, float activations and float I/O; no calibration."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from quantflow.core.specbase import Expected, VariantBase
from quantflow.core.tfenv import tf_modules
from quantflow.variants import ConvertInputs
from quantflow.variants._common import SAVED_MODEL, saved_model_converter, write_tflite


class DynamicRangeVariant(VariantBase):
    kind: Literal["dynamic_range"] = Field(description="Int8 weights, float activations.")

    needs_calibration: ClassVar[bool] = False
    requires: ClassVar[frozenset[str]] = SAVED_MODEL
    order: ClassVar[int] = 10

    def promise(self) -> Expected:
        """Weights turn int8; the interface stays float and nothing becomes float16."""
        return Expected("float32", "int8", ("float16",))


def convert(inputs: ConvertInputs, variant: DynamicRangeVariant, out: Path) -> Path:
    """Optimize.DEFAULT without a representative dataset is exactly dynamic range quantization."""
    tf, _ = tf_modules()
    converter = saved_model_converter(inputs)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return write_tflite(converter, out)
