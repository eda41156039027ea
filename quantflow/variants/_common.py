"""Helpers every converter shares, kept here so each kind's module is only its converter settings.

Nothing here imports TensorFlow at module level: :func:`quantflow.core.tfenv.tf_modules` is called
inside the functions, so importing a kind's module stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from quantflow.core import io
from quantflow.core.spec import TrainSpec
from quantflow.core.tfenv import tf_modules
from quantflow.variants import ConvertInputs

# Integer io_type names of the spec; each is also the `tf` dtype attribute of the same name.
IO_TYPES = ("int8", "uint8", "int16")


def load_model(inputs: ConvertInputs) -> Any:
    """The trained tf_keras model, without its training state (converters need only the graph).

    ``safe_mode=True`` refuses arbitrary Python lambdas in a .keras file we did not write.
    """
    _, keras = tf_modules()
    return keras.models.load_model(str(inputs.trained), compile=False, safe_mode=True)


def keras_converter(model: Any) -> Any:
    """A TFLiteConverter for ``model``; from_keras_model is what the reference sizes use."""
    tf, _ = tf_modules()
    return tf.lite.TFLiteConverter.from_keras_model(model)


def representative_dataset(calibration: Path) -> Callable[[], Iterator[list[np.ndarray]]]:
    """A generator factory over the calibration samples, one at a time with a batch dim of 1.

    One sample per call matches the converter's calibration loop, which feeds each yielded
    list as the model's inputs for a single invocation.
    """
    x = io.load_calibration(calibration)

    def gen() -> Iterator[list[np.ndarray]]:
        for i in range(len(x)):
            yield [x[i : i + 1]]

    return gen


def set_io_type(converter: Any, io_type: str) -> None:
    """Integer I/O for ``int8``/``uint8``/``int16``; ``float32`` keeps the float interface."""
    if io_type == "float32":
        return
    if io_type not in IO_TYPES:
        raise ValueError(f"unsupported io_type {io_type!r}; known: float32, {', '.join(IO_TYPES)}")
    tf, _ = tf_modules()
    dtype = getattr(tf, io_type)
    converter.inference_input_type = dtype
    converter.inference_output_type = dtype


def make_optimizer(train: TrainSpec, learning_rate: float | None = None) -> Any:
    """A fresh tf_keras optimizer from the training spec (QAT fine-tunes with the same kind)."""
    _, keras = tf_modules()
    classes = {
        "adam": keras.optimizers.Adam,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }
    return classes[train.optimizer](learning_rate=learning_rate or train.learning_rate)
