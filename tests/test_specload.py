"""The spec loader: valid documents load, every mistake is one line with file:line:col."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from quantflow.core.specload import SpecError, load_spec
from tests.tiny import TINY, write_workspace

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<path>\S+): (?P<msg>.+)$")


def problems(tmp_path: Path, text: str, overrides: list[str] | None = None) -> list[str]:
    f = tmp_path / "pipelines.yaml"
    f.write_text(text)
    with pytest.raises(SpecError) as exc:
        load_spec(f, overrides)
    return [str(p) for p in exc.value.problems]


def test_default_spec_is_valid():
    loaded = load_spec(ROOT / "pipelines.yaml")
    assert {"digits", "mnist"} <= set(loaded.spec.pipelines)
    kinds = {v.kind for v in loaded.spec.pipelines["digits"].variants}
    assert kinds == {"dynamic_range", "float16", "int8_float_fallback", "int8", "int16x8", "qat"}


def test_tiny_spec_round_trips(tmp_path):
    spec = load_spec(write_workspace(tmp_path)).spec
    assert spec.pipelines["tiny"].variant("i8").io_type == "int8"


def test_unknown_key_has_line_and_suggestion(tmp_path):
    text = yaml.safe_dump(TINY, sort_keys=False).replace("epochs: 8", "epochz: 8")
    [line] = problems(tmp_path, text)
    m = LINE.match(line)
    assert m, line
    assert m["path"] == "pipelines.tiny.train.epochz"
    assert text.splitlines()[int(m["line"]) - 1].strip().startswith("epochz")
    assert "did you mean 'epochs'" in m["msg"]


def test_bad_variant_kind_lists_allowed_kinds(tmp_path):
    text = yaml.safe_dump(TINY, sort_keys=False).replace("kind: int8", "kind: int4")
    [line] = problems(tmp_path, text)
    assert "pipelines.tiny.variants[1].kind" in line
    assert "'int8'" in line and "'qat'" in line


def test_io_type_not_supported_by_kind(tmp_path):
    text = yaml.safe_dump(TINY, sort_keys=False).replace("io_type: int8", "io_type: int16")
    [line] = problems(tmp_path, text)
    assert "variants[1].io_type" in line and "'uint8'" in line


def test_duplicate_variant_names(tmp_path):
    text = yaml.safe_dump(TINY, sort_keys=False).replace("name: i8", "name: dr")
    [line] = problems(tmp_path, text)
    assert "pipelines.tiny.variants" in line and "used twice" in line


def test_several_problems_reported_at_once(tmp_path):
    text = yaml.safe_dump(TINY, sort_keys=False).replace("epochs: 8", "epochs: -3").replace(
        "max_accuracy_drop: 0.1", "max_accuracy_drop: -1")
    lines = problems(tmp_path, text)
    assert len(lines) == 2
    assert all(LINE.match(x) for x in lines)


def test_override_is_validated_like_the_file(tmp_path):
    f = write_workspace(tmp_path)
    assert load_spec(f, ["pipelines.tiny.train.epochs=3"]).spec.pipelines["tiny"].train.epochs == 3
    assert load_spec(f, ["pipelines.tiny.variants.i8.io_type=uint8"]).spec.pipelines[
        "tiny"].variant("i8").io_type == "uint8"
    with pytest.raises(SpecError) as exc:
        load_spec(f, ["pipelines.tiny.train.epochs=zero"])
    assert str(exc.value).startswith("--set pipelines.tiny.train.epochs=zero: ")


@pytest.mark.parametrize("text, expect", [
    ("", "empty"),
    ("- a\n- b\n", "got a list"),
    ("pipelines:\n\tdigits: {}\n", "YAML syntax error"),
    ("pipelines: {a: 1}\npipelines: {b: 2}\n", "duplicate key"),
])
def test_document_level_errors(tmp_path, text, expect):
    [line] = problems(tmp_path, text)
    assert expect in line
    assert re.match(r"^[^:]+:\d+:\d+: ", line), line
