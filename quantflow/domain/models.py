"""What every model source and every training loop shares: fit checks and the optimizer.

The sources themselves (built-in architectures, a user's model file) live one per module in
``quantflow.sources``.
"""

from __future__ import annotations

from typing import Any

from quantflow.core.errors import ModelError
from quantflow.core.specbase import TrainSpec
from quantflow.core.tfenv import tf_modules


def check_input_shape(keras_model: Any, sample_shape: tuple[int, ...]) -> None:
    """Fail before training when the data cannot be fed to the model."""
    expected = tuple(keras_model.input_shape[1:])
    if len(expected) != len(sample_shape) or any(
        e is not None and e != s for e, s in zip(expected, sample_shape, strict=False)
    ):
        raise ModelError(f"the model expects inputs of shape {expected}, the dataset has "
                         f"{sample_shape}")


def check_classes(keras_model: Any, num_classes: int) -> None:
    """A user's model must have an output for every label of the data."""
    shape = keras_model.output_shape
    outputs = shape[-1] if isinstance(shape, tuple) and len(shape) > 1 else None
    if outputs is not None and outputs < num_classes:
        raise ModelError(f"the model has {outputs} outputs but the labels go up to "
                         f"{num_classes - 1}; labels must be 0..{outputs - 1}")


def optimizer(train: TrainSpec, learning_rate: float | None = None) -> Any:
    """A fresh tf_keras optimizer of the spec's kind: training and QAT's fine-tuning both use
    it, so `train.optimizer` means the same thing in both (QAT may set its own rate)."""
    _, keras = tf_modules()
    classes = {
        "adam": keras.optimizers.Adam,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }
    return classes[train.optimizer](learning_rate=learning_rate or train.learning_rate)
