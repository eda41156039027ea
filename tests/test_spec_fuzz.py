"""Property: whatever a user writes, the spec loader returns a spec or raises SpecError.

Three generators: YAML-ish text built from the tokens YAML cares about, documents built from the
real schema's keys and literal values, and the tiny valid spec with random edits and `--set`
overrides. Any other exception (a yaml error, a TypeError from a helper, a RecursionError)
escaping load_spec is a bug: the CLI would show a traceback instead of `file:line:col`.
"""

from __future__ import annotations

import copy
import math
import re
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from quantflow.core import spec as spec_module
from quantflow.core.specload import LoadedSpec, SpecError, load_spec
from quantflow.sources import sources
from quantflow.variants import kinds
from tests.tiny import TINY

FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def _schema_words() -> tuple[list[str], list[Any]]:
    """Every field name and every Literal value of the spec models (kinds and model sources
    included: their spec classes live in their own modules)."""
    keys: set[str] = set()
    literals: set[Any] = set()
    plugins = [k.spec for k in kinds().values()] + [s.spec for s in sources().values()]
    for obj in [*vars(spec_module).values(), *plugins]:
        if isinstance(obj, type) and issubclass(obj, BaseModel) and obj is not BaseModel:
            for name, field in obj.model_fields.items():
                keys.add(name)
                for arg in (field.annotation, *typing.get_args(field.annotation)):
                    if typing.get_origin(arg) is typing.Literal:
                        literals.update(typing.get_args(arg))
    return sorted(keys), sorted(literals, key=str)


KEYS, LITERALS = _schema_words()
TOKENS = [*KEYS, *map(str, LITERALS), ": ", ":", "\n", "\n  ", "\n    ", "- ", "\t", "[", "]",
          "{", "}", ", ", "#", "&a ", "*a", "!!python/object:os.system ", "!!binary ", "!x ",
          "|\n  ", ">-\n ", "'", '"', "---\n", "...\n", "%YAML 1.1\n", "? ", "~", "null", "yes",
          "1e-3", "-1", "0", "1.5", ".nan", ".inf", "0x1F", "../", "/", "$(", ";", "\x00",
          "\u2028", "\ufeff", "é"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(LITERALS),
    st.text(max_size=12), st.sampled_from(["../x", "/etc", "a" * 300, "x\x00y", "", "-", "1e-3"]),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8))
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=6),
    max_leaves=40,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


TINY_PATHS = _paths(TINY)[1:]
edits = st.lists(st.tuples(st.sampled_from(TINY_PATHS),
                           st.sampled_from(["set", "delete", "add"]), keys, documents),
                 max_size=4)
overrides = st.lists(
    st.builds(lambda path, value: f"{path}={value}",
              st.lists(st.one_of(keys, st.sampled_from(["pipelines", "tiny", "0", "9", "i8"])),
                       max_size=5).map(".".join),
              st.one_of(st.text(max_size=10), st.sampled_from(["-1", "[1", "{a: 1}", "1e-3"]))),
    max_size=3,
) | st.lists(st.text(max_size=15), max_size=2)


def _edit(doc: dict, path: tuple, op: str, key: str, value: Any) -> None:
    node: Any = doc
    for part in path[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return
    last = path[-1]
    if op == "set" and isinstance(node, dict | list):
        with_index = isinstance(node, dict) or (isinstance(last, int) and last < len(node))
        if with_index:
            node[last] = value
    elif op == "delete" and isinstance(node, dict):
        node.pop(last, None)
    elif op == "add" and isinstance(node, dict):
        node[key] = value


def check(path: Path, text: str, sets: list[str] | None = None) -> None:
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        loaded = load_spec(path, sets)
    except SpecError as exc:
        assert exc.problems
        where = re.compile(rf"^{re.escape(str(path))}(:\d+:\d+)?$|^--set ")
        for p in exc.problems:
            assert where.match(p.where), p
            assert p.message
        return
    assert isinstance(loaded, LoadedSpec)


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "pipelines.yaml"


@FUZZ
@given(st.lists(st.one_of(st.sampled_from(TOKENS), st.text(max_size=3)), max_size=40))
def test_yamlish_text_only_raises_spec_error(spec_file: Path, tokens: list[str]):
    check(spec_file, "".join(tokens))


@FUZZ
@given(documents | st.dictionaries(st.sampled_from(["pipelines", "execution", "pipeline"]),
                                   documents, max_size=2))
def test_schema_shaped_documents_only_raise_spec_error(spec_file: Path, doc: Any):
    check(spec_file, yaml.safe_dump(doc, allow_unicode=True))


@FUZZ
@given(edits, overrides)
def test_edited_tiny_spec_and_overrides_only_raise_spec_error(spec_file: Path, changes, sets):
    doc = copy.deepcopy(TINY)
    for path, op, key, value in changes:
        _edit(doc, path, op, key, value)
    check(spec_file, yaml.safe_dump(doc, allow_unicode=True), sets)


def test_nan_threshold_is_rejected_not_accepted(spec_file: Path):
    """A NaN threshold would make every comparison False: the gate could never decide."""
    doc = copy.deepcopy(TINY)
    doc["pipelines"]["tiny"]["gate"]["max_accuracy_drop"] = math.nan
    with pytest.raises(SpecError, match="max_accuracy_drop"):
        load_spec(_write(spec_file, doc))


def _write(path: Path, doc: Any) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path
