"""A user's own model (a Keras 2 or Keras 3 file, a SavedModel folder or a float .tflite):
loaded safely and checked against the data, never trained."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, PrivateAttr, ValidationInfo, model_validator

from quantflow.core.specbase import ModelBase
from quantflow.sources import _loaders
from quantflow.sources._formats import CAPABILITIES, DESCRIPTIONS, Format, detect

TRAINED_NAMES = {"keras2": "model.keras", "keras3": "model.keras",
                 "saved_model": "saved_model", "tflite": "model.tflite"}


class PathModel(ModelBase):
    path: str = Field(
        description="An existing .keras/.h5 file (Keras 2 or 3), SavedModel directory or float "
        ".tflite file; training is skipped."
    )
    format: Format | None = Field(
        None, description="Force the format (default: told from the file: a .keras file's "
        "metadata names its Keras version, a folder is a SavedModel, .tflite is TFLite)."
    )
    signature: str = Field(
        "serving_default", min_length=1,
        description="The SavedModel signature to convert (SavedModel directories only).",
    )

    trains: ClassVar[bool] = False
    # The most a path model offers; `provides()` narrows it to what the file is.
    capabilities: ClassVar[frozenset[str]] = frozenset({"keras2", "saved_model", "tflite"})
    selected_by: ClassVar[str] = "path"
    usage: ClassVar[str] = "path: <model file>"
    order: ClassVar[int] = 30

    _detected: Format = PrivateAttr("keras2")

    @model_validator(mode="after")
    def _detect_format(self, info: ValidationInfo) -> PathModel:
        """Read the file once, at validation: the workspace comes in the validation context
        (specload passes it); without one the path is taken relative to the current folder."""
        workspace = Path((info.context or {}).get("workspace", "."))
        self._detected = self.format or detect(workspace / self.path)
        if self.signature != "serving_default" and self._detected != "saved_model":
            raise ValueError(f"model.signature applies to SavedModel directories only; "
                             f"model.path {self.path!r} is {DESCRIPTIONS[self._detected]}")
        return self

    @property
    def kind(self) -> Format:
        """The model's format: forced with `format:`, else detected from the file."""
        return self._detected

    def files(self) -> dict[str, str]:
        return {"path": self.path}

    def provides(self) -> frozenset[str]:
        return CAPABILITIES[self.kind] & self.capabilities

    def describe(self) -> str:
        return f"model.path {self.path!r} is {DESCRIPTIONS[self.kind]}"

    def trained_name(self) -> str:
        return TRAINED_NAMES[self.kind]

    def signature_key(self) -> str:
        return self.signature


def build(model: PathModel, input_shape: tuple[int, ...], classes: int,
          workspace: Path) -> Any:
    """The user's model, checked against the data before anything is spent on it: a Keras
    model (2 or 3) to save as train's output, or the path of a checked SavedModel/.tflite to
    copy there."""
    return _loaders.load_checked(model.path, model.kind, model.signature, workspace,
                                 input_shape, classes)


def load(model: PathModel, workspace: Path) -> Any:
    """The user's Keras model (2 or 3), loaded safely; see ``_loaders``."""
    return _loaders.load_keras(model.path, model.kind, workspace)
