"""`quantflow run` end to end on a tiny pipeline: real Prefect (session harness), real TF
training and conversion, real LiteRT evaluation, real registry."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from quantflow.cli import app
from quantflow.core import specload
from quantflow.core.errors import Exit
from quantflow.domain.registry import list_versions, resolve_alias
from quantflow.domain.verify import verify
from tests.tiny import tiny_spec, write_workspace

pytestmark = pytest.mark.integration


def quantflow(*args: str):
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_run_publishes_then_failed_gate_keeps_alias(prefect_harness, tmp_path, monkeypatch):
    spec = write_workspace(tmp_path / "ws", tiny_spec())
    parses = []
    real = specload._compose
    monkeypatch.setattr(specload, "_compose", lambda *a: parses.append(a) or real(*a))
    code, out = quantflow("run", "--spec", str(spec), "--force")
    assert code == 0, out
    assert len(parses) == 1, "pipelines.yaml is parsed once per run (cli, plan, flow, summary)"
    reg = tmp_path / "ws" / "registry" / "tiny"
    [version] = list_versions(reg)
    assert resolve_alias(reg, "latest") == version
    manifest = json.loads((reg / version / "manifest.json").read_text())
    assert {f["variant"] for f in manifest["files"].values()} == {"dr", "i8"}
    assert manifest["metrics"]["i8"]["tensors"]["input_dtype"] == "int8"
    assert len(manifest["spec_sha256"]) == 64 and manifest["dataset_sha256"]
    assert verify(tmp_path / "ws" / "registry") == []
    report = (tmp_path / "ws" / "artifacts" / "tiny" / "report.md").read_text()
    assert "| i8 | int8 |" in report and "passed" in report

    # An impossible threshold: nothing passes, nothing is published, the alias stays.
    code, out = quantflow("run", "--spec", str(spec), "--force",
                          "--set", "pipelines.tiny.gate.min_accuracy=1.0")
    assert code == Exit.BLOCKED, out
    assert list_versions(reg) == [version]
    assert resolve_alias(reg, "latest") == version
    assert "blocked" in out


@pytest.mark.parametrize("override", ["pipelines.tiny.train.epochs=-1", "train.epochs=-1"])
def test_bad_override_exits_2_and_writes_nothing(tmp_path, override):
    spec = write_workspace(tmp_path / "ws", tiny_spec())
    code, out = quantflow("run", "--spec", str(spec), "--set", override)
    assert code == Exit.SPEC
    assert "pipelines.tiny.train.epochs" in out
    assert sorted(p.name for p in (tmp_path / "ws").iterdir()) == ["pipelines.yaml"]


def _task_runs_of_last_flow_run() -> dict[str, object]:
    """The task runs of the newest quantize-pipeline flow run, by name, from the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        [last] = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[last.id])))
    return {r.name.rsplit("-", 1)[0] if r.name.startswith(("export", "train")) else r.name: r
            for r in runs}


def test_qat_fine_tunes_beside_export_with_the_same_result(prefect_harness, tmp_path):
    """QAT's conversion reads only the trained model, so it starts with export (two workers)
    and is evaluated once export is done; the model equals a one-worker run's byte for byte."""
    variants = [{"name": "q", "kind": "qat"}, {"name": "dr", "kind": "dynamic_range"}]
    shas = {}
    for workers in (2, 1):
        ws = tmp_path / f"w{workers}"
        spec = write_workspace(ws, tiny_spec(variants=variants))
        code, out = quantflow("run", "--spec", str(spec), "--force",
                              "--set", f"execution.max_workers={workers}")
        assert code == Exit.OK, out
        runs = _task_runs_of_last_flow_run()
        m = json.loads((ws / "artifacts/tiny/variants/q/metrics.json").read_text())
        assert m["status"] == "ok" and m["convert_seconds"] > 0
        shas[workers] = m["sha256"]
        if workers == 2:
            convert, export, evaluate = runs["convert-q"], runs["export"], runs["quantize-q"]
            assert convert.start_time < export.end_time, "QAT started before export ended"
            assert evaluate.start_time >= export.end_time, "evaluated against the baseline"
            assert convert.end_time <= evaluate.start_time
        else:
            assert "convert-q" not in runs, "one worker: nothing to run beside export"
    assert shas[2] == shas[1]
