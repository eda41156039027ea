"""The registry table, the spec's Variant union and the kind modules must agree."""

from __future__ import annotations

import inspect
import typing
from importlib import import_module

from quantflow.core import spec
from quantflow.variants import REGISTRY, converter


def union_kinds() -> set[str]:
    union = typing.get_args(spec.Variant)[0]
    return {typing.get_args(m.model_fields["kind"].annotation)[0] for m in typing.get_args(union)}


def test_registry_matches_variant_union() -> None:
    assert set(REGISTRY) == union_kinds()


def test_every_module_has_convert_with_the_contract() -> None:
    for kind, module in REGISTRY.items():
        convert = import_module(module).convert
        assert convert is converter(kind)
        assert list(inspect.signature(convert).parameters) == ["inputs", "variant", "out"]


def test_kind_modules_do_not_import_tensorflow_at_module_level() -> None:
    for module in REGISTRY.values():
        source = inspect.getsource(import_module(module))
        top_level = [line for line in source.splitlines() if line.startswith(("import", "from"))]
        assert not [line for line in top_level if "tensorflow" in line or "tf_keras" in line]
