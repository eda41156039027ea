"""Integer-only quantization (TFLITE_BUILTINS_INT8), for int8-only accelerators and MCUs."""

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


class Int8Variant(EngineVariant):
    kind: Literal["int8"] = Field(description="Integer-only (TFLITE_BUILTINS_INT8).")
    io_type: Literal["int8", "uint8", "float32"] = Field(
        "int8", description="Type of the model's input and output tensors."
    )

    needs_calibration: ClassVar[bool] = True
    order: ClassVar[int] = 40

    def promise(self) -> Expected:
        """Integer-only means no float weights at all, and the I/O type that was asked for."""
        return Expected(self.io_type, "int8", ("float32", "float16"))


def convert(inputs: ConvertInputs, variant: Int8Variant, out: Path) -> Path:
    """Only int8 builtins are allowed, so an op without an int8 kernel fails the conversion
    (loudly, with the converter's message) instead of silently running in float; with AEQ,
    which would leave such an op in float, the check after quantizing fails it the same way."""
    if variant.engine == AEQ:
        return aeq_convert(inputs, out, static(8, variant.io_type), calibrate=True,
                           io_type=variant.io_type,
                           no_float="integer-only int8 allows none: use int8_float_fallback")
    tf, _ = tf_modules()
    converter = saved_model_converter(inputs)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset(inputs)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    set_io_type(converter, variant.io_type)
    return write_tflite(converter, out, inputs)
