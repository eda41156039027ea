"""Built-in architectures and loading of users' models (Keras 2 via tf_keras)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quantflow.spec import MlpModel, PathModel, SeedCnnModel
from quantflow.tfenv import tf_modules


class ModelError(ValueError):
    """A model file that cannot be used, or a model that does not fit the data."""


def build(model: SeedCnnModel | MlpModel, input_shape: tuple[int, ...], classes: int) -> Any:
    """A fresh, uncompiled tf_keras model that outputs logits."""
    _, keras = tf_modules()
    layers = keras.layers
    if isinstance(model, SeedCnnModel):
        if len(input_shape) != 2:
            raise ModelError(f"seed_cnn expects 2-D images (H, W), the data has {input_shape}")
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
    """Load a user's model safely: safe_mode for .keras, no custom objects, no pickle."""
    _, keras = tf_modules()
    path = workspace / model.path
    if not path.exists():
        raise ModelError(f"model.path {model.path!r}: not found ({path})")
    try:
        if path.suffix == ".keras":
            return keras.models.load_model(path, compile=False, safe_mode=True)
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # every loader failure means "not a model we can use"
        raise ModelError(f"model.path {model.path!r}: not a loadable Keras/SavedModel "
                         f"model ({type(exc).__name__}: {str(exc)[:300]})") from None


def check_input_shape(keras_model: Any, sample_shape: tuple[int, ...]) -> None:
    """Fail before training when the data cannot be fed to the model."""
    expected = tuple(keras_model.input_shape[1:])
    if len(expected) != len(sample_shape) or any(
        e is not None and e != s for e, s in zip(expected, sample_shape, strict=False)
    ):
        raise ModelError(f"the model expects inputs of shape {expected}, the dataset has "
                         f"{sample_shape}")


def optimizer(name: str, learning_rate: float) -> Any:
    _, keras = tf_modules()
    classes = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD,
               "rmsprop": keras.optimizers.RMSprop}
    return classes[name](learning_rate=learning_rate)
