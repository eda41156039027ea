"""16-bit activations with 8-bit weights: closer to float accuracy than int8, still integer."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from quantflow.core.specbase import Expected
from quantflow.core.tfenv import tf_modules
from quantflow.variants import ConvertInputs
from quantflow.variants._common import (
    representative_dataset,
    saved_model_converter,
    set_io_type,
    write_tflite,
)
from quantflow.variants._engine import AEQ, EngineVariant, aeq_convert, static


class Int16x8Variant(EngineVariant):
    kind: Literal["int16x8"] = Field(description="16-bit activations, 8-bit weights.")
    allow_float_fallback: bool = Field(False, description="Allow float kernels as fallback.")
    io_type: Literal["float32", "int16"] = Field("float32", description="Input/output type.")

    needs_calibration: ClassVar[bool] = True
    order: ClassVar[int] = 50

    def promise(self) -> Expected:
        """Int8 weights and the I/O type that was asked for."""
        return Expected(self.io_type, "int8")


def convert(inputs: ConvertInputs, variant: Int16x8Variant, out: Path) -> Path:
    """The 16x8 ops set is experimental; TFLITE_BUILTINS is added only when the spec allows
    float fallback, so by default an unsupported op fails the conversion (AEQ's
    static_wi8_ai16: the check after quantizing fails it)."""
    if variant.engine == AEQ:
        advice = "" if variant.allow_float_fallback else "allow_float_fallback: true allows it"
        return aeq_convert(inputs, out, static(16, variant.io_type), calibrate=True,
                           io_type=variant.io_type, no_float=advice)
    tf, _ = tf_modules()
    ops = tf.lite.OpsSet
    converter = saved_model_converter(inputs)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset(inputs)
    supported = [ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    if variant.allow_float_fallback:
        supported.append(ops.TFLITE_BUILTINS)
    converter.target_spec.supported_ops = supported
    set_io_type(converter, variant.io_type)
    return write_tflite(converter, out, inputs)
