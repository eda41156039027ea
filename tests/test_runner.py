"""quantflow.orchestration.runner._run_one: how a flow run's failure reaches the terminal (the
flow itself is replaced; its real failures are in tests/integration/test_signals.py)."""

from __future__ import annotations

import pytest
from rich.console import Console

import flows.quantize
from quantflow.core.errors import DataError, Exit, StepError
from quantflow.core.request import load_request
from quantflow.orchestration import runner
from quantflow.orchestration.plan import Plan
from tests.tiny import tiny_spec, write_workspace


def _run(tmp_path, monkeypatch, exc: BaseException) -> tuple[int, str, str]:
    spec = write_workspace(tmp_path / "ws", tiny_spec())
    monkeypatch.chdir(spec.parent)
    request = load_request(spec.parent, spec.name, [], "tiny")

    def failing(target, options):
        raise exc

    monkeypatch.setattr(flows.quantize, "quantize_pipeline", failing)
    console = Console(record=True, width=300)
    code = runner._run_one(Plan(request, {"prepare"}), [], False, console)
    [log] = (spec.parent / "artifacts" / "tiny" / "logs").glob("run-*.log")
    return code, console.export_text(), log.read_text()


@pytest.mark.parametrize("exc, code, line", [
    (DataError("dataset: 1 NaN/Inf input values [3, 2, 1]"), Exit.SPEC,
     "tiny: dataset: 1 NaN/Inf input values [3, 2, 1] (log: artifacts/tiny/logs/run-"),
    (StepError("export failed: ConverterError: [tf.lite.OpsSet.TFLITE_BUILTINS]"), Exit.ERROR,
     "tiny: export failed: ConverterError: [tf.lite.OpsSet.TFLITE_BUILTINS] (log: "),
])
def test_a_failed_flow_run_is_one_line_with_its_log(tmp_path, monkeypatch, exc, code, line):
    got, out, log = _run(tmp_path, monkeypatch, exc)
    assert got == code
    [shown] = [x for x in out.splitlines() if x.startswith("tiny: ") and "log: " in x
               and not x.startswith("tiny: log ")]
    assert shown.startswith(line), out
    assert "Traceback" not in out and "Traceback" in log


def test_a_run_outside_a_dvc_repository_says_once_that_nothing_is_cached(tmp_path) -> None:
    spec = write_workspace(tmp_path / "ws", tiny_spec())
    request = load_request(spec.parent, spec.name, [], "tiny")
    note = runner.uncached_note([request, request])
    assert note is not None and note.count(str(spec.parent)) == 1
    assert "not a DVC repository" in note and "quantflow init" in note
    (spec.parent / ".dvc").mkdir()
    assert runner.uncached_note([request]) is None
