"""One tiny trained tf_keras model per session, with every file a converter reads.

Training takes seconds, so it happens once; tests only convert and evaluate. The model is the
seed CNN shrunk to sklearn's 8x8 digits so the real converter and interpreter run end to end.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from quantflow.core.spec import TrainSpec
from quantflow.core.tfenv import configure_env
from quantflow.variants import ConvertInputs

configure_env()

# 16 filters: the Dense kernel (3*3*16 x 10 = 1,440) is above the converter's 1,024-element
# threshold below which dynamic range quantization leaves weights in float.
FILTERS = 16
TRAIN, TEST, CALIBRATION = 600, 200, 32
TRAIN_SPEC = TrainSpec(epochs=1, batch_size=16, learning_rate=1e-2, seed=0)


def inputs_in(root: Path) -> ConvertInputs:
    return ConvertInputs(
        trained=root / "trained.keras",
        saved_model=root / "saved_model",
        calibration=root / "calibration.npz",
        dataset=root / "dataset.npz",
        train=TRAIN_SPEC,
    )


def build_inputs(root: Path) -> ConvertInputs:
    """Train the tiny CNN for one epoch and write .keras, SavedModel, dataset and calibration."""
    from sklearn.datasets import load_digits

    from quantflow.core.tfenv import tf_modules

    tf, keras = tf_modules()
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, y_train = x[:TRAIN], y[:TRAIN]
    x_test, y_test = x[TRAIN : TRAIN + TEST], y[TRAIN : TRAIN + TEST]
    keras.utils.set_random_seed(TRAIN_SPEC.seed)
    model = keras.Sequential(
        [
            keras.layers.InputLayer(input_shape=(8, 8)),
            keras.layers.Reshape((8, 8, 1)),
            keras.layers.Conv2D(FILTERS, (3, 3), activation="relu"),
            keras.layers.MaxPooling2D((2, 2)),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        keras.optimizers.Adam(TRAIN_SPEC.learning_rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x_train, y_train, batch_size=TRAIN_SPEC.batch_size, epochs=1, verbose=0)
    inputs = inputs_in(root)
    model.save(inputs.trained)
    tf.saved_model.save(model, str(inputs.saved_model))
    np.savez(inputs.calibration, x=x_train[:CALIBRATION])
    np.savez(inputs.dataset, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return inputs


def shared_inputs(tmp_path_factory: pytest.TempPathFactory) -> ConvertInputs:
    """Build once per session in a fixed folder, so tests/test_evaluate.py (outside this folder,
    it loads this file by path) reuses the model instead of training another."""
    root = tmp_path_factory.getbasetemp() / "tiny_model"
    if not (root / "ready").exists():
        root.mkdir(exist_ok=True)
        build_inputs(root)
        (root / "ready").touch()
    return inputs_in(root)


@pytest.fixture(scope="session")
def tiny_inputs(tmp_path_factory: pytest.TempPathFactory) -> ConvertInputs:
    return shared_inputs(tmp_path_factory)
