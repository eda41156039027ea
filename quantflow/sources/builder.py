"""A team's own architecture: a function in the workspace builds it, quantflow trains it.

``model: {builder: "package.module:function", params: {...}}``. The contract:
``function(input_shape, num_classes, **params)`` is called with the shape of one example
(a tuple, no batch dimension) and the number of classes in the data, and returns a fresh,
uncompiled **tf_keras** model (``import tf_keras as keras``) with one input of that shape and
one output of ``num_classes`` values (logits, or a softmax). quantflow compiles and trains it
like the built-in architectures, so every kind including QAT applies. Export and quantize reload
the trained model without importing the module, so it must use tf_keras's own layers: no
custom layer classes, subclassed models or Lambda layers.

The module is found in the folder of the spec file without being executed (validate names its
file, and DVC tracks it as a dep of train); it is imported, which runs its code, only by the
train step and `quantflow validate --deep` / `inspect`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, JsonValue, PrivateAttr, ValidationInfo, field_validator, model_validator

from quantflow.core.errors import ModelError
from quantflow.core.specbase import ModelBase
from quantflow.sources import _userimport

_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
_TARGET = re.compile(rf"^{_DOTTED}:[A-Za-z_][A-Za-z0-9_]*$")
RESERVED = ("input_shape", "num_classes")  # the two arguments quantflow passes itself


class BuilderModel(ModelBase):
    builder: str = Field(
        description="`package.module:function` in the workspace (the spec's folder), called as "
        "function(input_shape, num_classes, **params); returns an uncompiled tf_keras model."
    )
    params: dict[str, JsonValue] = Field(
        default_factory=dict, description="Keyword arguments for the builder function (part "
        "of the train stage's DVC params)."
    )

    trains: ClassVar[bool] = True
    capabilities: ClassVar[frozenset[str]] = frozenset({"keras2", "saved_model"})
    selected_by: ClassVar[str] = "builder"
    usage: ClassVar[str] = "builder: <package.module:function>"
    order: ClassVar[int] = 25

    _file: str = PrivateAttr("")

    @field_validator("builder")
    @classmethod
    def _is_target(cls, v: str) -> str:
        if not _TARGET.match(v):
            raise ValueError(f"model.builder {v!r}: write `package.module:function` (dotted "
                             "module path in the workspace, a colon, the function's name)")
        return v

    @field_validator("params")
    @classmethod
    def _not_reserved(cls, v: dict[str, Any]) -> dict[str, Any]:
        taken = [k for k in v if k in RESERVED]
        if taken:
            raise ValueError(f"model.params may not set {', '.join(taken)}: quantflow passes "
                             "input_shape and num_classes from the data")
        return v

    @model_validator(mode="after")
    def _find_file(self, info: ValidationInfo) -> BuilderModel:
        """Locate the module's file now (no code runs): files() must name it for DVC."""
        workspace = Path((info.context or {}).get("workspace", "."))
        found = _userimport.module_file(self.module, workspace)
        self._file = (found.resolve().relative_to(workspace.resolve()).as_posix() if found
                      else _userimport.guessed_file(self.module))
        return self

    @property
    def module(self) -> str:
        return self.builder.split(":", 1)[0]

    @property
    def function(self) -> str:
        return self.builder.split(":", 1)[1]

    def files(self) -> dict[str, str]:
        return {"builder": self._file}

    def describe(self) -> str:
        return f"model.builder {self.builder!r} builds a Keras 2 (tf_keras) model"


def _fail(model: BuilderModel, what: str) -> ModelError:
    return ModelError(f"model.builder {model.builder!r}: {what}")


def _function(model: BuilderModel, workspace: Path) -> Any:
    try:
        module = _userimport.import_from(model.module, workspace)
    except Exception as exc:  # any error while importing user code means "does not import"
        raise _fail(model, f"does not import ({type(exc).__name__}: {str(exc)[:300]})") \
            from exc
    fn = getattr(module, model.function, None)
    if fn is None:
        raise _fail(model, f"{model.module} has no {model.function!r} "
                           f"({module.__file__})")
    if not callable(fn):
        raise _fail(model, f"{model.function!r} is a {type(fn).__name__}, not callable")
    return fn


def _layers(keras_model: Any) -> list[Any]:
    """Every layer, nested models' layers included."""
    out = []
    for layer in getattr(keras_model, "layers", None) or []:
        out += [layer, *_layers(layer)]
    return out


def check_built(model: BuilderModel, built: Any, input_shape: tuple[int, ...],
                classes: int) -> None:
    """The returned object must be a model the rest of the pipeline can use: a tf_keras
    Model (QAT wraps only those) of built-in layers, one input of the data's shape and one
    output per class. Each failure is said in the spec's words."""
    from quantflow.core.tfenv import tf_modules
    from quantflow.domain.models import check_input_shape

    _, tf_keras = tf_modules()
    kind = type(built).__module__.split(".")[0]
    if kind == "keras":
        raise _fail(model, "returned a Keras 3 model; build it with tf_keras "
                           "(`import tf_keras as keras`) so that QAT can wrap it")
    if not isinstance(built, tf_keras.Model):
        raise _fail(model, f"returned a {type(built).__name__}, not a tf_keras Model")
    custom = [type(x).__name__ for x in [built, *_layers(built)]
              if type(x).__module__.split(".")[0] != "tf_keras" or type(x).__name__ == "Lambda"]
    if custom:
        raise _fail(model, f"uses {', '.join(sorted(set(custom)))}, which the trained model "
                           "cannot be reloaded with (export does not import your module); "
                           "use tf_keras's own layers, no Lambda or subclassed models")
    ins, outs = getattr(built, "inputs", None), getattr(built, "outputs", None)
    if not ins or not outs:
        raise _fail(model, "returned a model that is not built; give it its input "
                           "(tf_keras.Input(shape=input_shape) or an InputLayer)")
    if len(ins) != 1 or len(outs) != 1:
        raise _fail(model, f"returned a model with {len(ins)} inputs and {len(outs)} "
                           "outputs; quantflow needs one of each")
    try:
        check_input_shape(built, input_shape)
    except ModelError as exc:
        raise _fail(model, str(exc)) from None
    units = built.output_shape[-1]
    if units != classes:
        raise _fail(model, f"returned a model with {units} outputs per example; the data has "
                           f"{classes} classes (use num_classes)")


def build(model: BuilderModel, input_shape: tuple[int, ...], classes: int,
          workspace: Path) -> Any:
    """Import the user's module, call the builder with the data's shape and classes, and
    check what it returned before training starts."""
    fn = _function(model, workspace)
    try:
        built = fn(tuple(input_shape), classes, **model.params)
    except Exception as exc:  # the user's code failed: say so, keep its traceback chained
        raise _fail(model, f"raised {type(exc).__name__}: {str(exc)[:300]}") from exc
    check_built(model, built, tuple(input_shape), classes)
    return built
