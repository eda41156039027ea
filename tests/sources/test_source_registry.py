"""The source modules are the registry: each keeps the contract, the spec's Model union is built
from them, and a kind that needs more than a model source offers fails validation."""

from __future__ import annotations

import inspect
import typing
from importlib import import_module
from pathlib import Path

import pytest
from pydantic import ValidationError

from quantflow.core import spec
from quantflow.core.specbase import ModelBase
from quantflow.sources import source_of, sources, usage
from quantflow.sources.path import PathModel
from quantflow.variants import kinds
from tests.tiny import tiny_spec

ROOT = Path(__file__).resolve().parents[2]
SOURCES = list(sources().values())


def test_every_module_of_the_package_is_a_source() -> None:
    modules = sorted(p.stem for p in (ROOT / "quantflow" / "sources").glob("[!_]*.py"))
    assert sorted(sources()) == modules


@pytest.mark.parametrize("s", SOURCES, ids=[s.name for s in SOURCES])
def test_each_source_keeps_the_contract(s) -> None:
    module = import_module(s.module)
    assert issubclass(s.spec, ModelBase) and s.spec.__module__ == s.module
    assert s.spec.model_config["extra"] == "forbid"
    assert all(f.description for f in s.spec.model_fields.values())
    assert isinstance(s.spec.trains, bool)
    assert isinstance(s.spec.capabilities, frozenset)
    assert s.build is module.build
    assert list(inspect.signature(s.build).parameters) == [
        "model", "input_shape", "classes", "workspace"]
    if s.spec.selected_by == "arch":
        assert typing.get_args(s.spec.model_fields["arch"].annotation) == (s.name,)
    else:
        assert s.spec.selected_by == s.name and s.spec.usage


def test_union_members_are_the_registry_in_order() -> None:
    union = typing.get_args(spec.Model)[0]
    members = [typing.get_args(m)[0] for m in typing.get_args(union)]
    assert members == [s.spec for s in SOURCES]
    assert usage() == ("`arch: seed_cnn | mlp` or `builder: <package.module:function>` or "
                       "`path: <model file>`")


def test_the_uniform_interface() -> None:
    """What train, dvc.yaml and validate ask of a model, without isinstance."""
    built = spec.PipelineSpec.model_validate(tiny_spec()["pipelines"]["tiny"]).model
    assert (built.trains, built.files(), source_of(built).name) == (True, {}, "mlp")
    user = PathModel(path="models/m.keras")
    assert (user.trains, user.files(), source_of(user).name) == (
        False, {"path": "models/m.keras"}, "path")


def test_every_requirement_of_a_kind_is_offered_by_some_source() -> None:
    offered = frozenset().union(*(s.spec.capabilities for s in SOURCES))
    assert all(k.spec.requires <= offered for k in kinds().values())


def test_a_kind_needing_what_the_source_lacks_fails_validation(monkeypatch) -> None:
    pipeline = tiny_spec(model={"path": "m.keras"},
                         variants=[{"name": "q", "kind": "qat"}])["pipelines"]["tiny"]
    spec.PipelineSpec.model_validate(pipeline)
    monkeypatch.setattr(PathModel, "capabilities", frozenset())
    with pytest.raises(ValidationError, match="variant 'q' \\(kind qat\\) needs a Keras 2 "
                                              "\\(tf_keras\\) model and a SavedModel or Keras "
                                              "model; model.path 'm.keras' is "):
        spec.PipelineSpec.model_validate(pipeline)
