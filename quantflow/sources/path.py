"""A user's own model file (.keras, .h5 or a SavedModel folder): loaded safely, not trained."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from quantflow.core.errors import ModelError
from quantflow.core.specbase import ModelBase
from quantflow.core.tfenv import tf_modules
from quantflow.domain.models import check_classes, check_input_shape


class PathModel(ModelBase):
    path: str = Field(
        description="An existing .keras/.h5 file or SavedModel directory; training is skipped."
    )

    trains: ClassVar[bool] = False
    # Loaded with tf_keras: whatever loads is a Keras 2 model (tfmot can wrap it).
    capabilities: ClassVar[frozenset[str]] = frozenset({"keras2"})
    selected_by: ClassVar[str] = "path"
    usage: ClassVar[str] = "path: <model file>"
    order: ClassVar[int] = 30

    def files(self) -> dict[str, str]:
        return {"path": self.path}


def build(model: PathModel, input_shape: tuple[int, ...], classes: int,
          workspace: Path) -> Any:
    """The user's model, checked against the data before anything is spent on it."""
    loaded = load(model, workspace)
    check_input_shape(loaded, input_shape)
    check_classes(loaded, classes)
    return loaded


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
