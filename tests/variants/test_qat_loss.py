"""QAT (and train) compile with the loss that fits the model's output: a model ending in
softmax gets from_logits=False, so tf_keras no longer warns that the loss got probabilities."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from quantflow.core.spec import TrainSpec
from quantflow.domain.models import ends_in_softmax
from quantflow.variants import ConvertInputs, converter
from quantflow.variants.qat import QatVariant


@pytest.mark.slow
def test_a_softmax_model_through_qat_logs_no_logits_warning(tmp_path: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from quantflow.core.tfenv import tf_modules

    _, keras = tf_modules()
    rng = np.random.default_rng(0)
    x = rng.random((256, 8, 8), dtype=np.float32)
    y = rng.integers(0, 10, 256).astype(np.int64)
    model = keras.Sequential([keras.layers.InputLayer(input_shape=(8, 8)),
                              keras.layers.Flatten(), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    assert ends_in_softmax(model)
    model.save(tmp_path / "m.keras")
    np.savez(tmp_path / "data.npz", x_train=x, y_train=y, x_test=x[:64], y_test=y[:64])
    np.savez(tmp_path / "cal.npz", x=x[:16])
    inputs = ConvertInputs(trained=tmp_path / "m.keras", saved_model=tmp_path / "unused",
                           calibration=tmp_path / "cal.npz", dataset=tmp_path / "data.npz",
                           train=TrainSpec(epochs=1, batch_size=32))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = converter("qat")(inputs, QatVariant(name="q", kind="qat"), tmp_path / "q.tflite")
    assert not [w for w in seen if "from_logits" in str(w.message)]
    interp = Interpreter(model_path=str(out))
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x[:1])
    interp.invoke()
    probs = interp.get_tensor(interp.get_output_details()[0]["index"])
    assert probs.shape == (1, 10) and abs(float(probs.sum()) - 1) < 0.05


def test_logits_models_keep_from_logits() -> None:
    from quantflow.core.tfenv import tf_modules
    from quantflow.domain.models import classification_loss

    _, keras = tf_modules()
    logits = keras.Sequential([keras.layers.InputLayer(input_shape=(4,)), keras.layers.Dense(3)])
    probs = keras.Sequential([keras.layers.InputLayer(input_shape=(4,)), keras.layers.Dense(3),
                              keras.layers.Softmax()])
    assert classification_loss(logits).get_config()["from_logits"] is True
    assert classification_loss(probs).get_config()["from_logits"] is False
