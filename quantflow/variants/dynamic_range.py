"""Dynamic range quantization: int8 weights, float activations and float I/O; no calibration."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from quantflow.core.specbase import Expected
from quantflow.core.tfenv import tf_modules
from quantflow.variants import ConvertInputs
from quantflow.variants._common import saved_model_converter, write_tflite
from quantflow.variants._engine import AEQ, EngineVariant, aeq_convert, dynamic_int8


class DynamicRangeVariant(EngineVariant):
    kind: Literal["dynamic_range"] = Field(description="Int8 weights, float activations.")

    needs_calibration: ClassVar[bool] = False
    order: ClassVar[int] = 10

    def promise(self) -> Expected:
        """Weights turn int8; the interface stays float and nothing becomes float16."""
        return Expected("float32", "int8", ("float16",))


def convert(inputs: ConvertInputs, variant: DynamicRangeVariant, out: Path) -> Path:
    """Optimize.DEFAULT without a representative dataset is exactly dynamic range quantization
    (AEQ: its dynamic_wi8_afp32 recipe, per-channel int8 weights)."""
    if variant.engine == AEQ:
        return aeq_convert(inputs, out, dynamic_int8(), calibrate=False)
    tf, _ = tf_modules()
    converter = saved_model_converter(inputs)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return write_tflite(converter, out)
