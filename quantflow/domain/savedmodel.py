"""The one SavedModel every conversion starts from, written once by the export step.

Converting ``from_saved_model`` of one folder, instead of re-tracing a Keras model in every
variant, means each variant converts the same graph the float baseline was converted from,
and a source that already is a SavedModel is never re-traced at all.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from quantflow.core import io
from quantflow.core.errors import ModelError
from quantflow.core.tfenv import tf_modules
from quantflow.sources._formats import detect


def _fill(trained: Path) -> Any:
    """How to write the SavedModel of ``trained`` into a (temp) folder, by its format."""
    fmt = detect(trained)
    if fmt == "saved_model":  # already one: copied, not re-traced
        return lambda tmp: shutil.copytree(trained, tmp, dirs_exist_ok=True)
    if fmt == "keras3":  # Keras 3 writes its own SavedModel (serve + serving_default)
        import keras

        model = keras.saving.load_model(trained, compile=False, safe_mode=True)
        return lambda tmp: model.export(str(tmp), verbose=False)
    tf, tf_keras = tf_modules()
    model = tf_keras.models.load_model(trained, compile=False, safe_mode=True)
    return lambda tmp: tf.saved_model.save(model, str(tmp))


def write_saved_model(trained: Path, out: Path) -> Path | None:
    """Write the SavedModel of train's output to ``out`` (atomically); None for a .tflite,
    from which no SavedModel can be made."""
    if detect(trained) == "tflite":
        return None
    io.replace_dir(out, _fill(trained))
    return out


def converter(saved_model: Path, signature: str = "serving_default") -> Any:
    """A TFLiteConverter for one signature of the SavedModel."""
    tf, _ = tf_modules()
    return tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=[signature])


RNN_BATCH = ("the model's RNN needs a static batch size: build its Input with batch_size=1 "
             "(or set `unroll=True` on the RNN layer)")


def convert(converter: Any) -> bytes:
    """Run the converter; an RNN over a dynamic batch fails deep in the converter with a
    TensorList lowering message, which is replaced by what to change in the model."""
    try:
        return converter.convert()
    except Exception as exc:
        if "TensorList" in str(exc) or "tensor list" in str(exc):
            raise ModelError(RNN_BATCH) from None
        raise
