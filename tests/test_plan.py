"""quantflow.orchestration.plan without DVC or TensorFlow: overrides relative to the pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantflow.core.request import load_request, pipeline_overrides
from quantflow.core.specload import SpecError
from tests.tiny import write_workspace


def test_relative_overrides_are_anchored_at_the_pipeline() -> None:
    given = ["train.epochs=3", "variants.i8.io_type=uint8", "pipelines.other.train.epochs=2",
             "execution.max_workers=1", "gate=", "no-equals-sign", "=3"]
    assert pipeline_overrides(given, "tiny") == [
        "pipelines.tiny.train.epochs=3", "pipelines.tiny.variants.i8.io_type=uint8",
        "pipelines.other.train.epochs=2", "execution.max_workers=1", "pipelines.tiny.gate=",
        "no-equals-sign", "=3"]


def test_context_applies_a_relative_override_like_the_absolute_one(tmp_path: Path) -> None:
    ws = write_workspace(tmp_path).parent
    relative = load_request(ws, "pipelines.yaml", ["train.epochs=3"], "tiny")
    absolute = load_request(ws, "pipelines.yaml", ["pipelines.tiny.train.epochs=3"], "tiny")
    assert relative.pipeline.train.epochs == 3
    assert relative.spec == absolute.spec


def test_a_bad_relative_override_names_the_full_field_path(tmp_path: Path) -> None:
    ws = write_workspace(tmp_path).parent
    with pytest.raises(SpecError) as exc:
        load_request(ws, "pipelines.yaml", ["train.epochs=0"], "tiny")
    (problem,) = exc.value.problems
    assert "pipelines.tiny.train.epochs" in str(problem)
    assert "greater than or equal to 1" in str(problem)
