"""`engine: ai_edge_quantizer` on every post-training kind, converted for real from the tiny
model's float .tflite: the tensor types the kind promises, accuracy next to the converter's,
and `engine: converter` exactly what the kinds always wrote."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from quantflow.core.spec import EvaluationSpec
from quantflow.domain.evaluate import check_types, predict_all, tensor_types, weight_dtypes
from quantflow.variants import ConvertInputs, converter
from quantflow.variants.dynamic_range import DynamicRangeVariant
from quantflow.variants.float16 import Float16Variant
from quantflow.variants.int8 import Int8Variant
from quantflow.variants.int8_float_fallback import Int8FloatFallbackVariant
from quantflow.variants.int16x8 import Int16x8Variant
from tests.variants.test_kinds import io_dtypes

pytestmark = pytest.mark.slow
AEQ = {"engine": "ai_edge_quantizer"}

# variant, input/output dtype, a weight dtype it must store (written out, as in test_kinds)
CASES = [
    (DynamicRangeVariant(name="dr", kind="dynamic_range", **AEQ), "float32", "int8"),
    (Float16Variant(name="f16", kind="float16", **AEQ), "float32", "float16"),
    (Int8FloatFallbackVariant(name="fb", kind="int8_float_fallback", **AEQ), "float32", "int8"),
    (Int8Variant(name="i8", kind="int8", **AEQ), "int8", "int8"),
    (Int8Variant(name="u8", kind="int8", io_type="uint8", **AEQ), "uint8", "int8"),
    (Int8Variant(name="i8f", kind="int8", io_type="float32", **AEQ), "float32", "int8"),
    (Int16x8Variant(name="a16", kind="int16x8", **AEQ), "float32", "int8"),
    (Int16x8Variant(name="a16i", kind="int16x8", io_type="int16", **AEQ), "int16", "int8"),
]


@pytest.fixture(scope="session")
def aeq_inputs(tiny_inputs: ConvertInputs) -> ConvertInputs:
    """The tiny model's inputs plus its float .tflite, converted as export converts it."""
    from quantflow.domain import savedmodel

    float_tflite = tiny_inputs.saved_model.parent / "float.tflite"
    if not float_tflite.exists():
        float_tflite.write_bytes(savedmodel.convert(savedmodel.converter(
            tiny_inputs.saved_model, "serving_default")))
    return dataclasses.replace(tiny_inputs, float_tflite=float_tflite)


def accuracy(tflite: Path, inputs: ConvertInputs) -> float:
    data = np.load(inputs.dataset)
    outputs = predict_all(tflite, data["x_test"], EvaluationSpec())
    return float(np.mean(np.argmax(outputs, axis=-1) == data["y_test"]))


@pytest.mark.parametrize(("variant", "io", "weights"), CASES, ids=[c[0].name for c in CASES])
def test_aeq_engine_keeps_the_promise_and_the_converters_accuracy(
    aeq_inputs: ConvertInputs, tmp_path: Path, variant: Any, io: str, weights: str
) -> None:
    out = converter(variant.kind)(aeq_inputs, variant, tmp_path / "model.tflite")
    assert io_dtypes(out) == (io, io)
    assert weights in weight_dtypes(out.read_bytes())
    assert check_types(tensor_types(out), variant.kind, variant) == []
    assert [p.name for p in tmp_path.iterdir()] == ["model.tflite"]  # no temp file left
    classic = variant.model_copy(update={"engine": "converter"})
    reference = converter(variant.kind)(aeq_inputs, classic, tmp_path / "converter.tflite")
    assert io_dtypes(reference) == (io, io)
    # 200 test digits: 4 samples either way
    assert abs(accuracy(out, aeq_inputs) - accuracy(reference, aeq_inputs)) <= 0.02
    assert accuracy(out, aeq_inputs) >= accuracy(aeq_inputs.float_tflite, aeq_inputs) - 0.02


def test_uint8_io_computes_exactly_what_the_int8_model_does(aeq_inputs: ConvertInputs,
                                                             tmp_path: Path) -> None:
    """The uint8 interface is the int8 model requantized at its ends: the same scale, zero
    points moved by 128, so every output is the int8 one shifted, sample for sample."""
    from ai_edge_litert.interpreter import Interpreter

    i8 = converter("int8")(aeq_inputs, CASES[3][0], tmp_path / "i8.tflite")
    u8 = converter("int8")(aeq_inputs, CASES[4][0], tmp_path / "u8.tflite")
    x = np.load(aeq_inputs.dataset)["x_test"][:20]
    got, params = {}, {}
    for path, shift in ((i8, 0), (u8, 128)):
        interp = Interpreter(model_path=str(path))
        interp.allocate_tensors()
        inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
        scale, zero = inp["quantization"]
        params[shift] = (scale, zero - shift, out["quantization"][0],
                         out["quantization"][1] - shift)
        rows = []
        for sample in x:
            q = np.clip(np.round(sample[None] / scale) + zero, -128 + shift, 127 + shift)
            interp.set_tensor(inp["index"], q.astype(inp["dtype"]))
            interp.invoke()
            rows.append(interp.get_tensor(out["index"]).astype(np.int32) - shift)
        got[shift] = np.concatenate(rows)
    assert params[0] == params[128]
    assert np.array_equal(got[0], got[128])


def test_converter_engine_writes_what_the_kinds_always_wrote(tiny_inputs: ConvertInputs,
                                                             tmp_path: Path) -> None:
    default = converter("dynamic_range")(
        tiny_inputs, DynamicRangeVariant(name="dr", kind="dynamic_range"), tmp_path / "a.tflite")
    explicit = converter("dynamic_range")(
        tiny_inputs, DynamicRangeVariant(name="dr", kind="dynamic_range", engine="converter"),
        tmp_path / "b.tflite")
    assert default.read_bytes() == explicit.read_bytes()


def test_an_op_left_in_float_fails_an_integer_only_kind(aeq_inputs: ConvertInputs,
                                                       tmp_path: Path) -> None:
    """AEQ keeps an op it is told not to (or cannot) quantize in float, silently; the check
    finds it, as the converter's TFLITE_BUILTINS_INT8 would refuse it."""
    from quantflow.variants import _aeq
    from quantflow.variants._engine import float_ops

    x = np.load(aeq_inputs.calibration)["x"]
    qsvs = _aeq.calibrate(aeq_inputs.float_tflite, x)
    conv = next(la for la in _aeq.layers(aeq_inputs.float_tflite, qsvs) if la.op == "CONV_2D")
    full = _aeq.quantized(aeq_inputs.float_tflite, _aeq.recipe({}, "int8"), qsvs)
    mixed = _aeq.quantized(aeq_inputs.float_tflite, _aeq.recipe({conv.scope: "float"}, "int8"),
                           qsvs)
    assert float_ops(full) == []
    assert "CONV_2D" in float_ops(mixed)


def test_the_check_fails_the_variant_and_writes_nothing(aeq_inputs: ConvertInputs,
                                                        tmp_path: Path) -> None:
    from quantflow.variants import _aeq
    from quantflow.variants._engine import aeq_convert

    qsvs = _aeq.calibrate(aeq_inputs.float_tflite, np.load(aeq_inputs.calibration)["x"])
    conv = next(la for la in _aeq.layers(aeq_inputs.float_tflite, qsvs) if la.op == "CONV_2D")
    out = tmp_path / "model.tflite"
    with pytest.raises(ValueError, match=r"left 1 ops in float \(CONV_2D\); use this"):
        aeq_convert(aeq_inputs, out, _aeq.recipe({conv.scope: "float"}, "int8"),
                    calibrate=True, io_type="int8", no_float="use this")
    assert list(tmp_path.iterdir()) == []
