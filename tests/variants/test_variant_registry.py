"""The kind modules are the registry: each one keeps the whole contract, and everything built
from them (the registry, the spec's Variant union, the JSON Schema, the type checks) agrees."""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing
from importlib import import_module
from pathlib import Path

import pytest
import yaml

from quantflow.core import spec
from quantflow.core.schema import json_schema
from quantflow.core.specbase import Expected, VariantBase
from quantflow.domain.evaluate import expected_types
from quantflow.variants import FLOAT_PROMISE, converter, kind, kinds

ROOT = Path(__file__).resolve().parents[2]
KINDS = list(kinds().values())


def defaults(k):
    return k.spec(name=k.name, kind=k.name)


def test_every_module_of_the_package_is_a_kind() -> None:
    modules = sorted(p.stem for p in (ROOT / "quantflow" / "variants").glob("[!_]*.py"))
    assert sorted(kinds()) == modules


@pytest.mark.parametrize("k", KINDS, ids=[k.name for k in KINDS])
def test_each_kind_keeps_the_contract(k) -> None:
    module = import_module(k.module)
    assert k.module == f"quantflow.variants.{k.name}"
    assert issubclass(k.spec, VariantBase) and k.spec.__module__ == k.module
    assert typing.get_args(k.spec.model_fields["kind"].annotation) == (k.name,)
    assert k.spec.model_config["extra"] == "forbid"
    assert all(f.description for f in k.spec.model_fields.values())
    variant = defaults(k)
    assert isinstance(variant.needs_calibration, bool)
    assert isinstance(k.spec.requires, frozenset)
    assert isinstance(variant.promise(), Expected)
    assert k.convert is module.convert is converter(k.name)
    assert list(inspect.signature(k.convert).parameters) == ["inputs", "variant", "out"]


def test_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="no variant kind 'int4'; known: dynamic_range, float16"):
        kind("int4")


def test_union_members_are_the_registry_in_order() -> None:
    union = typing.get_args(spec.Variant)[0]
    assert list(typing.get_args(union)) == [k.spec for k in KINDS]


def test_schema_lists_every_kind() -> None:
    variants = json_schema()["definitions"]["PipelineSpec"]["properties"]["variants"]["items"]
    assert set(variants["discriminator"]["mapping"]) == set(kinds())
    assert {ref["$ref"].rsplit("/", 1)[1] for ref in variants["oneOf"]} == {
        k.spec.__name__ for k in KINDS}


def test_every_kind_has_type_expectations() -> None:
    """What used to be a KeyError at run time, recorded as a failed variant."""
    for k in KINDS:
        assert expected_types(k.name, defaults(k)) == defaults(k).promise()
        assert isinstance(expected_types(k.name), Expected)
    assert expected_types("float") == FLOAT_PROMISE == Expected("float32", None,
                                                                ("int8", "float16"))


def test_every_kind_used_in_the_repos_pipelines_is_known() -> None:
    doc = yaml.safe_load((ROOT / "pipelines.yaml").read_text())
    used = {v["kind"] for p in doc["pipelines"].values() for v in p["variants"]}
    assert used <= set(kinds())


def test_kind_modules_do_not_import_tensorflow_at_module_level() -> None:
    for k in KINDS:
        source = inspect.getsource(import_module(k.module))
        top_level = [line for line in source.splitlines() if line.startswith(("import", "from"))]
        assert not [line for line in top_level if "tensorflow" in line or "tf_keras" in line]


def test_loading_the_spec_imports_neither_tensorflow_nor_numpy() -> None:
    """The spec imports every kind module; `validate` must stay as fast as it was."""
    code = ("import sys, quantflow.core.spec, quantflow.core.specload\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'tf_keras', 'numpy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
