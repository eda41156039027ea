"""Model sources: where the model quantflow quantizes comes from, one module per source.

``quantflow/sources/<name>.py`` holds the source's spec class (a ``ModelBase`` subclass: its
fields, ``trains``, ``capabilities``, ``files()``) and
``build(model, input_shape, classes, workspace) -> tf_keras model``: a fresh, uncompiled model
when the source trains, the user's model, loaded and checked against the data, when it does
not. The spec's ``Model`` union is built from the modules found here, so adding a source is
adding a file.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, reduce
from operator import or_
from typing import Annotated, Any

from pydantic import Discriminator, Tag

from quantflow.core.plugins import discover, require, spec_class
from quantflow.core.specbase import ModelBase

Build = Callable[..., Any]


@dataclass(frozen=True)
class Source:
    """One discovered source: its name (= its module's name and its union tag), spec class and
    build function."""

    name: str
    spec: type[ModelBase]
    build: Build
    module: str


def _spec_class(module: Any) -> type[ModelBase]:
    return spec_class(module, ModelBase, "source")


def _check(name: str, spec: type[ModelBase]) -> None:
    """The union tag is the module's name: `arch: <name>`, or the key that selects it."""
    if not hasattr(spec, "trains") or not hasattr(spec, "capabilities"):
        raise TypeError(f"source {name}: {spec.__name__} must set trains and capabilities")
    if spec.selected_by == "arch":
        arch = spec.model_fields.get("arch")
        if arch is None or typing.get_args(arch.annotation) != (name,):
            raise TypeError(f"source {name}: {spec.__name__} needs arch: Literal[{name!r}]")
    elif spec.selected_by != name or not spec.usage:
        raise TypeError(f"source {name}: selected_by must be {name!r} and usage must be set")


@cache
def sources() -> dict[str, Source]:
    """Every source of this package, in the order users see them listed (``order``, name)."""
    found = []
    for module in discover(__name__):
        require(module, "build")
        spec, name = _spec_class(module), module.__name__.rpartition(".")[2]
        _check(name, spec)
        found.append(Source(name, spec, module.build, module.__name__))
    found.sort(key=lambda s: (s.spec.order, s.name))
    return {s.name: s for s in found}


def source_of(model: ModelBase) -> Source:
    """The source whose spec class ``model`` is."""
    for source in sources().values():
        if model.__class__ is source.spec:  # __class__: spec proxies (tests) too
            return source
    raise KeyError(f"no model source for {model.__class__.__name__}")


def _tag(value: Any) -> str | None:
    """A mapping naming a key-selected source's key is that source (`path` wins over `arch`,
    so `{path: m.keras, arch: mlp}` is a path model with an unknown key); else its `arch`."""
    if not isinstance(value, dict):
        return next((s.name for s in sources().values() if isinstance(value, s.spec)), None)
    for source in sources().values():
        if source.spec.selected_by != "arch" and source.spec.selected_by in value:
            return source.name
    return value.get("arch")


def usage() -> str:
    """What a model mapping must say, for the error on one that says neither."""
    archs = [s.name for s in sources().values() if s.spec.selected_by == "arch"]
    keyed = [f"`{s.spec.usage}`" for s in sources().values() if s.spec.selected_by != "arch"]
    return " or ".join(([f"`arch: {' | '.join(archs)}`"] if archs else []) + keyed)


def model_union() -> Any:
    """The spec's ``Model``: every source's spec class, told apart by :func:`_tag`."""
    members = [Annotated[s.spec, Tag(s.name)] for s in sources().values()]
    if len(members) == 1:
        return next(iter(sources().values())).spec
    return Annotated[
        reduce(or_, members),
        Discriminator(_tag, custom_error_type="model_kind",
                      custom_error_message=f"model needs {usage()}"),
    ]
