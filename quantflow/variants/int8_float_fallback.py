"""Full integer quantization where possible, float kernels where not; the model keeps float I/O."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from quantflow.core.specbase import Expected
from quantflow.core.tfenv import tf_modules
from quantflow.variants import ConvertInputs
from quantflow.variants._common import representative_dataset, saved_model_converter, write_tflite
from quantflow.variants._engine import AEQ, EngineVariant, aeq_convert, static


class Int8FloatFallbackVariant(EngineVariant):
    kind: Literal["int8_float_fallback"] = Field(
        description="Full integer with float fallback for ops without int8 kernels; float I/O."
    )

    needs_calibration: ClassVar[bool] = True
    order: ClassVar[int] = 30

    def promise(self) -> Expected:
        """Int8 weights and float I/O; float weights may remain where ops fell back."""
        return Expected("float32", "int8")


def convert(inputs: ConvertInputs, variant: Int8FloatFallbackVariant, out: Path) -> Path:
    """A representative dataset without restricting supported_ops lets ops fall back to float
    (AEQ: static_wi8_ai8 leaves the ops it cannot quantize in float by itself)."""
    if variant.engine == AEQ:
        return aeq_convert(inputs, out, static(8, "float32"), calibrate=True)
    tf, _ = tf_modules()
    converter = saved_model_converter(inputs)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset(inputs)
    return write_tflite(converter, out, inputs)
