"""Quantization variant kinds: one module per kind, and the module is all there is to a kind.

``quantflow/variants/<kind>.py`` holds the kind's spec class (a ``VariantBase`` subclass with
``kind: Literal["<kind>"]``, its options, ``needs_calibration``, ``requires`` and ``promise()``)
and ``convert(inputs: ConvertInputs, variant, out: Path) -> Path``, which writes one .tflite
file to ``out`` and returns it. The registry below, the spec's ``Variant`` union, the JSON
Schema and the tensor-type checks are built from the modules found in this package, so adding
a kind is adding a file; ``tests/variants/test_variant_registry.py`` checks the contract.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, reduce
from operator import or_
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from quantflow.core.plugins import discover, require, spec_class
from quantflow.core.specbase import Expected, TrainSpec, VariantBase

# The float baseline is no kind (nobody lists it under `variants:`), but it promises too.
FLOAT_PROMISE = Expected("float32", None, ("int8", "float16"))


@dataclass(frozen=True)
class ConvertInputs:
    """Files a converter may read; all produced by earlier steps."""

    trained: Path  # train's output (a tf_keras .keras file when the source is Keras 2)
    saved_model: Path  # export's SavedModel: every converter kind converts from it
    calibration: Path  # .npz: key "x" (one input) or "x.<input name>"; see core.io
    dataset: Path  # .npz with x_train, y_train, x_test, y_test (normalised float32 / int64)
    train: TrainSpec  # training settings (QAT fine-tunes with them)
    signature: str = "serving_default"  # the SavedModel signature to convert
    float_tflite: Path | None = None  # export's float .tflite (what ai-edge-quantizer rewrites)
    # Searching kinds (auto): measure a candidate .tflite as the quantize step measures the
    # variant and decide it with the gate's own function -> (VariantMetrics, VariantDecision).
    judge: Callable[[Path], Any] | None = None
    # Where the converter's integer kinds keep the pipeline's one calibrated float model
    # (variants/_calibrated.py); None: each conversion calibrates for itself.
    calibrated: Path | None = None


Convert = Callable[[ConvertInputs, Any, Path], Path]


@dataclass(frozen=True)
class Kind:
    """One discovered kind: its name (= its module's name), spec class and converter."""

    name: str
    spec: type[VariantBase]
    convert: Convert
    module: str


def _spec_class(module: Any) -> type[VariantBase]:
    return spec_class(module, VariantBase, "kind")


def _kind_name(spec: type[VariantBase]) -> str:
    args = typing.get_args(spec.model_fields["kind"].annotation)
    return args[0] if len(args) == 1 else ""


@cache
def kinds() -> dict[str, Kind]:
    """Every kind of this package, in the order users see them listed (``order``, then name)."""
    found = []
    for module in discover(__name__):
        require(module, "convert")
        spec, name = _spec_class(module), module.__name__.rpartition(".")[2]
        if "kind" not in spec.model_fields or _kind_name(spec) != name:
            raise TypeError(f"{module.__name__}: {spec.__name__} needs kind: Literal[{name!r}] "
                            "(a kind's module is named after the kind)")
        if not hasattr(spec, "needs_calibration") or spec.promise is VariantBase.promise:
            raise TypeError(f"{module.__name__}: {spec.__name__} must set needs_calibration "
                            "and define promise()")
        found.append(Kind(name, spec, module.convert, module.__name__))
    found.sort(key=lambda k: (k.spec.order, k.name))
    return {k.name: k for k in found}


def kind(name: str) -> Kind:
    try:
        return kinds()[name]
    except KeyError:
        raise KeyError(f"no variant kind {name!r}; known: {', '.join(kinds())}") from None


def converter(name: str) -> Convert:
    """The convert function of kind ``name``."""
    return kind(name).convert


def fitting_option(k: Kind, have: frozenset[str]) -> str | None:
    """How kind ``k`` applies to a model offering ``have``: "" as it is, the option (YAML
    text, from ``requires_with``) it needs to, or None when nothing makes it apply."""
    if k.spec.requires <= have:
        return ""
    return next((o for o, need in k.spec.requires_with.items() if need <= have), None)


def applicable(have: frozenset[str]) -> str:
    """The kinds that apply to a model offering ``have``, as errors list them: those that
    apply as they are, then each option with the kinds it makes apply ("" when none)."""
    groups: dict[str, list[str]] = {}
    for k in kinds().values():
        option = fitting_option(k, have)
        if option is not None:
            groups.setdefault(option, []).append(k.name)
    return "; ".join(", ".join(names) + (f" (with {option})" if option else "")
                     for option, names in sorted(groups.items()))


def variant_union() -> Any:
    """The spec's ``Variant``: a union of every kind's spec class, discriminated by ``kind``."""
    members = [k.spec for k in kinds().values()]
    if len(members) == 1:
        return members[0]
    return Annotated[reduce(or_, members), Field(discriminator="kind")]
