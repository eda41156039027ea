"""The seed CNN: the model of TensorFlow's QAT example, built fresh and trained by quantflow."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from quantflow.core.errors import ModelError
from quantflow.core.specbase import ModelBase
from quantflow.core.tfenv import tf_modules


class SeedCnnModel(ModelBase):
    arch: Literal["seed_cnn"] = Field(
        description="The CNN of TF's QAT example: Reshape, Conv2D, MaxPool, Flatten, Dense."
    )
    filters: int = Field(12, ge=1, le=1024, description="Conv2D filters.")
    kernel_size: int = Field(3, ge=1, le=11, description="Conv2D kernel size.")
    pool_size: int = Field(2, ge=1, le=8, description="MaxPool size.")

    trains: ClassVar[bool] = True
    capabilities: ClassVar[frozenset[str]] = frozenset({"keras2", "saved_model"})
    order: ClassVar[int] = 10


def check_fits(model: SeedCnnModel, input_shape: tuple[int, ...]) -> None:
    """The shape errors Conv2D/MaxPool would raise, said in the spec's words and before paying
    for the TensorFlow import."""
    if len(input_shape) != 2:
        raise ModelError(f"seed_cnn expects 2-D images (H, W), the data has {input_shape}")
    if min(input_shape) - model.kernel_size + 1 < model.pool_size:
        side = model.kernel_size + model.pool_size - 1
        raise ModelError(f"seed_cnn with kernel_size {model.kernel_size} and pool_size "
                         f"{model.pool_size} needs images of at least {side}x{side}, the data "
                         f"has {input_shape}")


def build(model: SeedCnnModel, input_shape: tuple[int, ...], classes: int,
          workspace: Path | None = None) -> Any:
    """A fresh, uncompiled tf_keras model that outputs logits (it reads no files)."""
    check_fits(model, input_shape)
    _, keras = tf_modules()
    layers = keras.layers
    return keras.Sequential([
        layers.InputLayer(input_shape=input_shape),
        layers.Reshape(target_shape=(*input_shape, 1)),
        layers.Conv2D(model.filters, kernel_size=(model.kernel_size, model.kernel_size),
                      activation="relu"),
        layers.MaxPooling2D(pool_size=(model.pool_size, model.pool_size)),
        layers.Flatten(),
        layers.Dense(classes),
    ])
