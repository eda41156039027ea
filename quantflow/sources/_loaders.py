"""Loading and checking a user's model file, per format, without running code stored in it.

Each loader turns every failure into a ModelError that names ``model.path`` and the format,
so a Keras 3 file fed to the Keras 2 loader (or the reverse) says so instead of showing
Keras's own ``Unrecognized keyword arguments``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quantflow.core.errors import ModelError
from quantflow.core.tfenv import tf_modules
from quantflow.domain.models import (
    Shapes,
    check_classes,
    check_input_shape,
    check_inputs,
    check_shapes,
)


def _refuse(rel: str, what: str, exc: Exception) -> ModelError:
    why = f"{type(exc).__name__}: {str(exc)[:300]}"
    if "Lambda" in str(exc):
        why = "it has a Lambda layer with Python code, which could run anything on load; " \
              "rebuild it without Lambda layers"
    elif "batch_shape" in str(exc):
        why = "it looks like a Keras 3 file; set `format: keras3`"
    return ModelError(f"model.path {rel!r}: not a loadable {what} model ({why})")


def load_keras(rel: str, fmt: str, workspace: Path) -> Any:
    """A Keras 2 model with tf_keras or a Keras 3 one with `keras`, safe mode for both.

    tf_keras honours ``safe_mode=`` only for zipped .keras files; .h5 files and SavedModels
    would unmarshal a Lambda layer's Python bytecode (arbitrary code) unless the safe-mode
    scope is set around the call.
    """
    path = workspace / rel
    if not path.exists():
        raise ModelError(f"model.path {rel!r}: not found ({path})")
    _, tf_keras = tf_modules()
    if fmt == "keras3":
        import keras

        loader, what, base = keras.saving.load_model, "Keras 3", keras.Model
        scope: Any = keras.src.saving.serialization_lib.SafeModeScope(safe_mode=True)
    else:
        from tf_keras.src.saving.serialization_lib import SafeModeScope

        loader, what, base = tf_keras.models.load_model, "Keras/SavedModel", tf_keras.Model
        scope = SafeModeScope(safe_mode=True)
    try:
        with scope:
            loaded = loader(path, compile=False, safe_mode=True)
    except Exception as exc:  # every loader failure means "not a model we can use"
        raise _refuse(rel, what, exc) from None
    if not isinstance(loaded, base):
        raise ModelError(f"model.path {rel!r}: a {type(loaded).__name__}, not a Keras "
                         "model (save it with model.save)")
    return loaded


def _saved_model_shapes(rel: str, path: Path, signature: str) -> tuple[Any, Any]:
    """({input name: shape}, outputs' shape) of the signature; the output shape is checked
    against the classes only when there is one output (else evaluation.output names it)."""
    tf, _ = tf_modules()
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        raise _refuse(rel, "SavedModel", exc) from None
    if signature not in loaded.signatures:
        raise ModelError(f"model.path {rel!r}: no signature {signature!r}; it has "
                         f"{', '.join(loaded.signatures) or 'none'} (set model.signature)")
    fn = loaded.signatures[signature]
    ins = {k: tuple(v.shape.as_list()) for k, v in fn.structured_input_signature[1].items()}
    outs = list(fn.structured_outputs.values())
    return ins, tuple(outs[0].shape.as_list()) if len(outs) == 1 else (None,)


def _tflite_shapes(rel: str, path: Path) -> tuple[Any, Any]:
    """(input shape, output shape) of a float .tflite, read with LiteRT."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        interp = Interpreter(model_path=str(path))
    except Exception as exc:
        raise _refuse(rel, ".tflite", exc) from None
    ins, outs = interp.get_input_details(), interp.get_output_details()
    if len(ins) != 1 or len(outs) != 1:
        raise ModelError(f"model.path {rel!r}: quantflow needs one input and one output, "
                         f"the model has {len(ins)} and {len(outs)}")
    if ins[0]["dtype"].__name__ != "float32":
        raise ModelError(f"model.path {rel!r}: a float .tflite is needed as the baseline; "
                         f"its input is {ins[0]['dtype'].__name__}")
    return tuple(ins[0]["shape_signature"]), tuple(outs[0]["shape_signature"])


def load_checked(rel: str, fmt: str, signature: str, workspace: Path,
                 input_shape: Shapes, classes: int) -> Any:
    """A checked Keras model, or the path of a checked SavedModel folder / .tflite file."""
    path = workspace / rel
    if fmt in ("keras2", "keras3"):
        model = load_keras(rel, fmt, workspace)
        check_input_shape(model, input_shape)
        check_classes(model, classes)
        return model
    if not path.exists():
        raise ModelError(f"model.path {rel!r}: not found ({path})")
    if fmt == "saved_model":
        ins, out = _saved_model_shapes(rel, path, signature)
        check_inputs(ins, input_shape)
        check_shapes((None,), out, (), classes)
    else:
        check_shapes(*_tflite_shapes(rel, path), input_shape, classes)
    return path
