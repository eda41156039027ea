"""QAT converts its fine-tuned model from a SavedModel of the serving signature alone (issue
#14: from_keras_model's Keras SavedModel traced every layer): the .tflite must be the one
from_keras_model makes, byte for byte, for float and integer I/O."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from quantflow.variants import _common


@pytest.fixture(scope="module")
def qat_model():
    """A few conv layers (conv+BN+ReLU, depthwise, pointwise, dense), quantize_model'd and
    fine-tuned one epoch, so the fake-quant ranges are trained ones."""
    import tensorflow_model_optimization as tfmot

    from quantflow.core.tfenv import tf_modules

    _, keras = tf_modules()
    keras.utils.set_random_seed(0)
    layers = keras.layers
    model = keras.Sequential([
        layers.InputLayer(input_shape=(16, 16, 3)),
        layers.Conv2D(8, 3), layers.BatchNormalization(), layers.ReLU(),
        layers.DepthwiseConv2D(3), layers.ReLU(6.0), layers.Conv2D(8, 1),
        layers.GlobalAveragePooling2D(), layers.Dense(10, activation="softmax"),
    ])
    x = np.random.default_rng(0).random((64, 16, 16, 3), dtype=np.float32)
    qat = tfmot.quantization.keras.quantize_model(model)
    qat.compile("adam", "sparse_categorical_crossentropy")
    qat.fit(x, np.arange(64) % 10, batch_size=16, epochs=1, verbose=0)
    return qat, x


def _convert(converter, io_type: str, x: np.ndarray) -> bytes:
    from quantflow.core.tfenv import tf_modules

    tf, _ = tf_modules()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if io_type != "float32":
        converter.representative_dataset = lambda: ([x[i : i + 1]] for i in range(8))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        _common.set_io_type(converter, io_type)
    return bytes(converter.convert())


@pytest.mark.slow
@pytest.mark.parametrize("io_type", ["float32", "int8"])
def test_qat_converter_gives_from_keras_models_bytes(qat_model, io_type: str,
                                                     tmp_path: Path) -> None:
    from tensorflow.lite.python import lite

    from quantflow.core.tfenv import tf_modules

    tf, _ = tf_modules()
    model, x = qat_model
    fast = _common.keras_converter(model, tmp_path)
    assert isinstance(fast, lite.TFLiteSavedModelConverterV2)  # not the fallback
    reference = _convert(tf.lite.TFLiteConverter.from_keras_model(model), io_type, x)
    assert _convert(fast, io_type, x) == reference


def test_a_model_the_signature_save_refuses_goes_through_from_keras_model(
        qat_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tensorflow.lite.python import lite

    def refuse(model, folder):
        raise AssertionError("Tried to export a function which references an 'untracked' "
                             "resource.")

    monkeypatch.setattr(_common, "_save_serving_signature", refuse)
    made = _common.keras_converter(qat_model[0], tmp_path)
    assert isinstance(made, lite.TFLiteKerasModelConverterV2)
