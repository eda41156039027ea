"""Calibrating once per pipeline gives the same bytes as the converter calibrating per kind.

Each case converts one kind twice from one SavedModel: through the converter's own path
(``ConvertInputs`` without export's float model: the converter calibrates) and through the
shared calibration (``variants/_calibrated.py``), and compares the files byte for byte. The
models cover what changes the converter's graph: convolutions, depthwise + batch norm + ReLU6 +
a residual add (MobileNetV2's block), a fused LSTM, and two inputs with integer token ids.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from quantflow.core import io
from quantflow.core.tfenv import tf_modules
from quantflow.variants import ConvertInputs, converter
from quantflow.variants import _calibrated as calibrated
from quantflow.variants.int8 import Int8Variant
from quantflow.variants.int8_float_fallback import Int8FloatFallbackVariant
from quantflow.variants.int16x8 import Int16x8Variant

pytestmark = pytest.mark.slow

KINDS = [
    Int8FloatFallbackVariant(name="fb", kind="int8_float_fallback"),
    Int8Variant(name="i8", kind="int8", io_type="int8"),
    Int8Variant(name="u8", kind="int8", io_type="uint8"),
    Int8Variant(name="i8f", kind="int8", io_type="float32"),
    Int16x8Variant(name="a16", kind="int16x8"),
    Int16x8Variant(name="a16i", kind="int16x8", io_type="int16"),
]


def mobilenet_block() -> tuple[Any, dict[str, np.ndarray]]:
    _, k = tf_modules()
    inp = k.Input((12, 12, 3))
    x = k.layers.Conv2D(8, 3, padding="same")(inp)
    y = k.layers.DepthwiseConv2D(3, padding="same")(x)
    y = k.layers.BatchNormalization()(y)
    y = k.layers.ReLU(6.0)(y)
    y = k.layers.Conv2D(8, 1)(y)
    x = k.layers.Add()([x, y])
    out = k.layers.Dense(4)(k.layers.GlobalAveragePooling2D()(x))
    return k.Model(inp, out), {"x": np.random.default_rng(0).random((24, 12, 12, 3), "f4")}


def lstm() -> tuple[Any, dict[str, np.ndarray]]:
    _, k = tf_modules()
    inp = k.Input((6, 3), batch_size=1)
    out = k.layers.Dense(2)(k.layers.LSTM(5)(inp))
    return k.Model(inp, out), {"x": np.random.default_rng(1).random((16, 6, 3), "f4")}


def two_inputs_with_tokens() -> tuple[Any, dict[str, np.ndarray]]:
    _, k = tf_modules()
    tokens, extra = k.Input((5,), dtype="int32", name="tokens"), k.Input((3,), name="extra")
    x = k.layers.GlobalAveragePooling1D()(k.layers.Embedding(20, 4)(tokens))
    out = k.layers.Dense(2)(k.layers.Concatenate()([x, k.layers.Dense(4)(extra)]))
    rng = np.random.default_rng(2)
    return k.Model([tokens, extra], out), {
        "x.tokens": rng.integers(0, 20, (16, 5)).astype(np.int64),
        "x.extra": rng.random((16, 3), "f4")}


def prepared(root: Path, build: Any) -> ConvertInputs:
    """SavedModel, export's float .tflite (same converter, same SavedModel), calibration."""
    from quantflow.domain import savedmodel

    tf, _ = tf_modules()
    model, samples = build()
    root.mkdir(parents=True)
    tf.saved_model.save(model, str(root / "saved_model"))
    io.write_bytes(root / "float.tflite",
                   savedmodel.convert(savedmodel.converter(root / "saved_model")))
    np.savez(root / "calibration.npz", **samples)
    return ConvertInputs(trained=root / "unused", saved_model=root / "saved_model",
                         calibration=root / "calibration.npz", dataset=root / "unused",
                         train=None)  # type: ignore[arg-type]


@pytest.fixture(scope="module", params=[mobilenet_block, lstm, two_inputs_with_tokens],
                ids=lambda b: b.__name__)
def model_inputs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) \
        -> ConvertInputs:
    return prepared(tmp_path_factory.mktemp(request.param.__name__) / "m", request.param)


def test_every_integer_kind_is_byte_identical_to_the_converters_own_path(
        model_inputs: ConvertInputs, tmp_path: Path) -> None:
    shared = dataclasses.replace(model_inputs, float_tflite=model_inputs.saved_model.with_name(
        "float.tflite"), calibrated=tmp_path / "calibrated")
    stateful = "lstm" in str(model_inputs.saved_model)
    # The converter has no 16x8 LSTM ("not yet supported for op: UNIDIRECTIONAL_SEQUENCE_LSTM").
    for variant in [k for k in KINDS if not (stateful and k.kind == "int16x8")]:
        own = converter(variant.kind)(model_inputs, variant, tmp_path / f"{variant.name}-own")
        once = converter(variant.kind)(shared, variant, tmp_path / f"{variant.name}-once")
        if not stateful:  # the converter's own LSTM output differs between its 1st and 2nd run
            assert once.read_bytes() == own.read_bytes(), variant.name
    made = list((tmp_path / "calibrated").glob("*.tflite"))
    # A model with variable tensors (an LSTM's states) keeps the converter's own path.
    assert len(made) == (0 if stateful else 1)


def test_the_calibration_is_made_once_and_changes_with_the_samples(
        model_inputs: ConvertInputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tensorflow.lite.python.optimize import calibrator

    if "lstm" in str(model_inputs.saved_model):
        pytest.skip("an LSTM keeps the converter's own calibration (variable tensors)")
    runs = []
    real = calibrator.Calibrator.calibrate
    monkeypatch.setattr(calibrator.Calibrator, "calibrate",
                        lambda self, gen: runs.append(1) or real(self, gen))
    shared = dataclasses.replace(model_inputs, float_tflite=model_inputs.saved_model.with_name(
        "float.tflite"), calibrated=tmp_path / "calibrated")
    for variant in KINDS[:3]:
        converter(variant.kind)(shared, variant, tmp_path / variant.name)
    assert len(runs) == 1
    first = calibrated.key(shared.float_tflite, shared.calibration)
    samples = dict(np.load(shared.calibration))
    np.savez(tmp_path / "fewer.npz", **{k: v[:8] for k, v in samples.items()})
    fewer = dataclasses.replace(shared, calibration=tmp_path / "fewer.npz")
    converter("int8")(fewer, KINDS[1], tmp_path / "again")
    assert len(runs) == 2 and calibrated.key(fewer.float_tflite, fewer.calibration) != first
    assert [p.stem for p in (tmp_path / "calibrated").glob("*.tflite")] == \
        [calibrated.key(fewer.float_tflite, fewer.calibration)], "the old key is removed"
