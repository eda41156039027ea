"""Every step reads only the spec keys it declares (READS), so the dvc.yaml params derived from
those declarations cannot miss a key a step reads: an undeclared read is a stage DVC would not
re-run after an edit."""

from __future__ import annotations

from dataclasses import replace
from importlib import import_module
from pathlib import Path

import pytest

from quantflow.core.request import load_request
from quantflow.steps import STAGES, declared_reads
from tests.steps.recording import SpecProxy, undeclared
from tests.tiny import tiny_spec, write_workspace

# One variant of every kind, each with a setting of its own, and one with a gate override.
VARIANTS = [
    {"name": "dr", "kind": "dynamic_range", "gate": {"max_accuracy_drop": 0.5}},
    {"name": "f16", "kind": "float16"},
    {"name": "i8f", "kind": "int8_float_fallback"},
    {"name": "i8", "kind": "int8", "io_type": "uint8"},
    {"name": "i16", "kind": "int16x8", "allow_float_fallback": True},
    {"name": "qat", "kind": "qat", "epochs": 1, "learning_rate": 0.001},
]


def run_recorded(ctx, stage: str, variant: str | None = None) -> set[str]:
    reads: set[str] = set()
    proxied = replace(ctx, pipeline=SpecProxy(ctx.pipeline, "", reads))
    module = import_module(f"quantflow.steps.{stage}")
    module.run(proxied, variant) if variant else module.run(proxied)
    return reads


@pytest.mark.slow
def test_every_step_reads_only_what_it_declares(tmp_path: Path) -> None:
    spec = tiny_spec(variants=VARIANTS, description="reads test")
    spec["pipelines"]["tiny"]["train"]["epochs"] = 2
    ctx = load_request(write_workspace(tmp_path, spec).parent, "pipelines.yaml", [], "tiny").step
    problems, seen = {}, set()
    for stage in STAGES:
        runs = [(v["name"], i) for i, v in enumerate(VARIANTS)] if stage == "quantize" \
            else [(None, None)]
        for variant, index in runs:
            reads = run_recorded(ctx, stage, variant)
            seen |= reads
            bad = undeclared(reads, declared_reads(stage), index)
            if bad:
                problems[f"{stage}:{variant}" if variant else stage] = bad
    assert not problems, f"steps read spec keys they do not declare in READS: {problems}"
    # the proxy really saw the steps at work (an empty record would pass vacuously)
    for key in ("dataset.source", "train.epochs", "evaluation.timed_runs", "variants.3.io_type",
                "variants.5.epochs", "gate.min_accuracy", "publish.alias"):
        assert any(r == key or key.startswith(r + ".") or r == "" for r in seen), key


def test_an_undeclared_read_is_reported() -> None:
    from quantflow.core.spec import PipelineSpec

    pipe = PipelineSpec.model_validate(tiny_spec(variants=VARIANTS)["pipelines"]["tiny"])
    reads: set[str] = set()
    proxy = SpecProxy(pipe, "", reads)
    _ = proxy.gate.min_accuracy, proxy.variants[1].kind, [v.name for v in proxy.variants]
    _ = proxy.variants[0].gate.max_accuracy_drop
    assert undeclared(reads, ("variants.{variant}", "-variants.{variant}.gate"), 0) == [
        "gate.min_accuracy", "variants.0.gate.max_accuracy_drop", "variants.1.kind"]
    assert undeclared(reads, ("gate", "variants.*"), None) == []
    assert isinstance(proxy.dataset, type(pipe.dataset)), "isinstance sees the real class"
