"""Float16 quantization: weights stored as float16 (half the size), computed in float32 on CPU."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from quantflow.core.specbase import Expected
from quantflow.core.tfenv import tf_modules
from quantflow.variants import ConvertInputs
from quantflow.variants._common import saved_model_converter, write_tflite
from quantflow.variants._engine import AEQ, EngineVariant, aeq_convert, float16_weights


class Float16Variant(EngineVariant):
    kind: Literal["float16"] = Field(description="Float16 weights.")

    needs_calibration: ClassVar[bool] = False
    order: ClassVar[int] = 20

    def promise(self) -> Expected:
        """Weights turn float16, none int8; the interface stays float."""
        return Expected("float32", "float16", ("int8",))


def convert(inputs: ConvertInputs, variant: Float16Variant, out: Path) -> Path:
    """Restricting supported_types to float16 is what turns DEFAULT into float16 weights
    (AEQ: float casting of the weights of fully connected, convolution and embedding ops)."""
    if variant.engine == AEQ:
        return aeq_convert(inputs, out, float16_weights(), calibrate=False)
    tf, _ = tf_modules()
    converter = saved_model_converter(inputs)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    return write_tflite(converter, out)
