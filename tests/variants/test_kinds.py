"""Each kind, converted for real, yields a model whose tensors have the types the kind promises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from quantflow.domain.evaluate import check_types, tensor_types, weight_dtypes
from quantflow.variants import ConvertInputs, Kind, converter, kinds
from quantflow.variants.dynamic_range import DynamicRangeVariant
from quantflow.variants.float16 import Float16Variant
from quantflow.variants.int8 import Int8Variant
from quantflow.variants.int8_float_fallback import Int8FloatFallbackVariant
from quantflow.variants.int16x8 import Int16x8Variant
from quantflow.variants.qat import QatVariant

pytestmark = pytest.mark.slow

# variant, expected input/output dtype, a weight dtype the model must store (written out here,
# not taken from the kinds' own promise(), so a wrong promise fails too)
KNOWN = [
    (DynamicRangeVariant(name="dr", kind="dynamic_range"), "float32", "int8"),
    (Float16Variant(name="f16", kind="float16"), "float32", "float16"),
    (Int8FloatFallbackVariant(name="fb", kind="int8_float_fallback"), "float32", "int8"),
    (Int8Variant(name="i8", kind="int8", io_type="int8"), "int8", "int8"),
    (Int8Variant(name="u8", kind="int8", io_type="uint8"), "uint8", "int8"),
    (Int8Variant(name="i8f", kind="int8", io_type="float32"), "float32", "int8"),
    (Int16x8Variant(name="a16", kind="int16x8"), "float32", "int8"),
    (Int16x8Variant(name="a16i", kind="int16x8", io_type="int16"), "int16", "int8"),
    (Int16x8Variant(name="a16fb", kind="int16x8", allow_float_fallback=True), "float32", "int8"),
    (QatVariant(name="qat", kind="qat"), "float32", "int8"),
    (QatVariant(name="qati8", kind="qat", io_type="int8"), "int8", "int8"),
]


def with_defaults(kind: Kind) -> tuple[Any, str | None, str | None]:
    """A kind added later is converted with its defaults and held to its own promise, until
    someone writes its cases out above."""
    variant = kind.spec(name=kind.name, kind=kind.name)
    return variant, variant.promise().io, variant.promise().weights


# auto gates its candidates with the quantize step's judge: tests/variants/test_auto.py runs it
NEW = [with_defaults(k) for k in kinds().values()
       if k.name not in {v.kind for v, _, _ in KNOWN} | {"auto"}]
CASES = KNOWN + NEW


def io_dtypes(tflite: Path) -> tuple[str, str]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite))
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    return np.dtype(inp["dtype"]).name, np.dtype(out["dtype"]).name


@pytest.mark.parametrize(("variant", "io", "weights"), CASES, ids=[c[0].name for c in CASES])
def test_kind_produces_promised_tensor_types(
    tiny_inputs: ConvertInputs, tmp_path: Path, variant: Any, io: str, weights: str
) -> None:
    out = converter(variant.kind)(tiny_inputs, variant, tmp_path / "model.tflite")
    assert out == tmp_path / "model.tflite" and out.stat().st_size > 0
    assert io_dtypes(out) == (io, io)
    assert weights in weight_dtypes(out.read_bytes())
    assert check_types(tensor_types(out), variant.kind, variant) == []
    assert [p.name for p in tmp_path.iterdir()] == ["model.tflite"]  # no temp file left


def test_sizes_shrink_as_promised(tiny_inputs: ConvertInputs, tmp_path: Path) -> None:
    from quantflow.variants._common import keras_converter, load_model

    float_size = len(keras_converter(load_model(tiny_inputs), tmp_path / "sm").convert())
    f16 = converter("float16")(tiny_inputs, CASES[1][0], tmp_path / "f16.tflite")
    dr = converter("dynamic_range")(tiny_inputs, CASES[0][0], tmp_path / "dr.tflite")
    assert dr.stat().st_size < f16.stat().st_size < float_size
    assert weight_dtypes(f16.read_bytes()).get("int8") is None


def test_converter_error_propagates_and_leaves_no_file(
    tiny_inputs: ConvertInputs, tmp_path: Path
) -> None:
    bad = tmp_path / "calibration.npz"
    np.savez(bad, x=np.zeros((4, 5, 5), np.float32))  # wrong input shape for the model
    inputs = ConvertInputs(**{**tiny_inputs.__dict__, "calibration": bad})
    out = tmp_path / "model.tflite"
    with pytest.raises(Exception, match=r"(?i)shape|dimension"):
        converter("int8")(inputs, Int8Variant(name="i8", kind="int8"), out)
    assert not out.exists()
