"""Helpers every converter shares, kept here so each kind's module is only its converter settings.

The spec imports every kind's module (its spec class lives there), so `quantflow validate` pays
for whatever they import at module level. Nothing here imports TensorFlow, NumPy or the file
helpers (which import NumPy) at module level: they are imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quantflow.core.specbase import INTEGER_IO
from quantflow.core.tfenv import tf_modules
from quantflow.variants import ConvertInputs

if TYPE_CHECKING:
    import numpy as np


def load_model(inputs: ConvertInputs) -> Any:
    """The trained tf_keras model, without its training state (QAT fine-tunes it).

    ``safe_mode=True`` refuses arbitrary Python lambdas in a .keras file we did not write.
    """
    _, keras = tf_modules()
    return keras.models.load_model(str(inputs.trained), compile=False, safe_mode=True)


# What every converter kind needs of the model: export's one SavedModel to convert from.
SAVED_MODEL = frozenset({"saved_model"})


def saved_model_converter(inputs: ConvertInputs) -> Any:
    """A TFLiteConverter of export's SavedModel: every kind converts the graph the float
    baseline was converted from, traced once, instead of re-tracing the Keras model."""
    from quantflow.domain.savedmodel import converter

    return converter(inputs.saved_model, inputs.signature)


def keras_converter(model: Any) -> Any:
    """A TFLiteConverter for an in-memory model: only QAT's fine-tuned model, which exists
    in no SavedModel, needs it (tfmot's documented path is from_keras_model)."""
    tf, _ = tf_modules()
    return tf.lite.TFLiteConverter.from_keras_model(model)


def representative_dataset(calibration: Path) -> Callable[[], Iterator[list[np.ndarray]]]:
    """A generator factory over the calibration samples, one at a time with a batch dim of 1.

    One sample per call matches the converter's calibration loop, which feeds each yielded
    list as the model's inputs for a single invocation.
    """
    from quantflow.core import io

    x = io.load_calibration(calibration)

    def gen() -> Iterator[list[np.ndarray]]:
        for i in range(len(x)):
            yield [x[i : i + 1]]

    return gen


def write_tflite(converter: Any, out: Path) -> Path:
    """Convert and write the model atomically: a failed or killed conversion leaves no file."""
    from quantflow.core import io

    return io.write_bytes(out, converter.convert())


def set_io_type(converter: Any, io_type: str) -> None:
    """Integer I/O for ``int8``/``uint8``/``int16``; ``float32`` keeps the float interface."""
    if io_type == "float32":
        return
    if io_type not in INTEGER_IO:
        raise ValueError(f"unsupported io_type {io_type!r}; known: float32, "
                         f"{', '.join(INTEGER_IO)}")
    tf, _ = tf_modules()
    dtype = getattr(tf, io_type)
    converter.inference_input_type = dtype
    converter.inference_output_type = dtype

