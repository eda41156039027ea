"""Built-in architectures and loading of users' models (Keras 2 via tf_keras)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quantflow.core.errors import ModelError  # noqa: F401 - re-exported
from quantflow.core.spec import MlpModel, PathModel, SeedCnnModel
from quantflow.core.tfenv import tf_modules


def build(model: SeedCnnModel | MlpModel, input_shape: tuple[int, ...], classes: int) -> Any:
    """A fresh, uncompiled tf_keras model that outputs logits."""
    if isinstance(model, SeedCnnModel) and len(input_shape) != 2:  # before paying for TF
        raise ModelError(f"seed_cnn expects 2-D images (H, W), the data has {input_shape}")
    if isinstance(model, SeedCnnModel) and \
            min(input_shape) - model.kernel_size + 1 < model.pool_size:
        side = model.kernel_size + model.pool_size - 1
        raise ModelError(f"seed_cnn with kernel_size {model.kernel_size} and pool_size "
                         f"{model.pool_size} needs images of at least {side}x{side}, the data "
                         f"has {input_shape}")
    _, keras = tf_modules()
    layers = keras.layers
    if isinstance(model, SeedCnnModel):
        return keras.Sequential([
            layers.InputLayer(input_shape=input_shape),
            layers.Reshape(target_shape=(*input_shape, 1)),
            layers.Conv2D(model.filters, kernel_size=(model.kernel_size, model.kernel_size),
                          activation="relu"),
            layers.MaxPooling2D(pool_size=(model.pool_size, model.pool_size)),
            layers.Flatten(),
            layers.Dense(classes),
        ])
    hidden = [layers.Dense(w, activation="relu") for w in model.hidden]
    return keras.Sequential([layers.InputLayer(input_shape=input_shape), layers.Flatten(),
                             *hidden, layers.Dense(classes)])


def load(model: PathModel, workspace: Path) -> Any:
    """Load a user's model safely: no custom objects, no pickle, and safe mode for every format.

    tf_keras honours ``safe_mode=`` only for zipped .keras files; .h5 files and SavedModels
    would unmarshal a Lambda layer's Python bytecode (arbitrary code) unless the safe-mode
    scope is set around the call.
    """
    _, keras = tf_modules()
    from tf_keras.src.saving.serialization_lib import SafeModeScope

    path = workspace / model.path
    if not path.exists():
        raise ModelError(f"model.path {model.path!r}: not found ({path})")
    try:
        with SafeModeScope(safe_mode=True):
            loaded = keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # every loader failure means "not a model we can use"
        why = f"{type(exc).__name__}: {str(exc)[:300]}"
        if "Lambda" in str(exc):
            why = "it has a Lambda layer with Python code, which could run anything on load; " \
                  "rebuild it without Lambda layers"
        raise ModelError(f"model.path {model.path!r}: not a loadable Keras/SavedModel "
                         f"model ({why})") from None
    if not isinstance(loaded, keras.Model):
        raise ModelError(f"model.path {model.path!r}: a {type(loaded).__name__}, not a Keras "
                         "model (save it with model.save)")
    if len(getattr(loaded, "inputs", None) or [0]) != 1 or \
            len(getattr(loaded, "outputs", None) or [0]) != 1:
        raise ModelError(f"model.path {model.path!r}: quantflow needs one input and one output, "
                         f"the model has {len(loaded.inputs)} and {len(loaded.outputs)}")
    return loaded


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


def optimizer(name: str, learning_rate: float) -> Any:
    _, keras = tf_modules()
    classes = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD,
               "rmsprop": keras.optimizers.RMSprop}
    return classes[name](learning_rate=learning_rate)
