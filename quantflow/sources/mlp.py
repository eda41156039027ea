"""A small fully connected network, built fresh and trained by quantflow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from quantflow.core.specbase import ModelBase
from quantflow.core.tfenv import tf_modules


class MlpModel(ModelBase):
    arch: Literal["mlp"] = Field(description="A small fully connected network.")
    hidden: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        default_factory=lambda: [64], description="Hidden layer widths (ReLU)."
    )

    trains: ClassVar[bool] = True
    capabilities: ClassVar[frozenset[str]] = frozenset({"keras2", "saved_model"})
    order: ClassVar[int] = 20


def build(model: MlpModel, input_shape: tuple[int, ...], classes: int,
          workspace: Path | None = None) -> Any:
    """A fresh, uncompiled tf_keras model that outputs logits; any input shape is flattened."""
    _, keras = tf_modules()
    layers = keras.layers
    hidden = [layers.Dense(w, activation="relu") for w in model.hidden]
    return keras.Sequential([layers.InputLayer(input_shape=input_shape), layers.Flatten(),
                             *hidden, layers.Dense(classes)])
