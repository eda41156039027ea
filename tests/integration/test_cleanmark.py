"""cleanmark against real DVC (no TensorFlow): DVC's "nothing to do" is remembered, stands
only while nothing DVC reads has changed, and then DVC is asked again and agrees."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from quantflow.core.request import load_request
from quantflow.orchestration.plan import finish_run, plan_run, release
from quantflow.versioning import cleanmark
from quantflow.versioning.dvc import stale_stages
from tests.integration.test_dvc import edit_spec, fake_outputs, record_all, status
from tests.integration.test_dvc import ws as ws  # noqa: F401 - the git + DVC repo fixture

pytestmark = pytest.mark.integration


def _request(ws: Path, overrides: list[str] | None = None):
    return load_request(ws, "pipelines.yaml", overrides or [], "tiny")


def _plan(ws: Path, overrides: list[str] | None = None):
    plan = plan_run(_request(ws, overrides))
    release(plan.request)
    return plan


@pytest.fixture
def clean(ws):  # noqa: F811
    """The tiny pipeline with every stage recorded, and DVC's verdict remembered."""
    fake_outputs(ws)
    record_all(_request(ws))
    assert _plan(ws).describe() == [] and status(ws) == {}
    assert cleanmark.holds(_request(ws)), "DVC said nothing to do: remembered"
    return ws


def _same_size_edit(path: Path) -> None:
    """New bytes, same size, same inode: only the mtime says it changed."""
    text = path.read_text()
    path.write_text(text[:-2] + ("X" if text[-2] != "X" else "Y") + text[-1])


def test_any_change_dvc_would_see_makes_dvc_decide_again(clean):
    ws = clean
    dataset = next((ws / "artifacts/tiny").rglob("dataset.npz"))
    changes = [
        ("a gate threshold", lambda: edit_spec(ws, lambda p: p["gate"].update(min_accuracy=0.6)),
         {"gate", "publish"}),
        ("an output's bytes (same size)", lambda: _same_size_edit(dataset),
         {"prepare", "train", "export", "quantize", "gate", "publish"}),
    ]
    for what, change, expected in changes:
        change()
        request = _request(ws)
        assert not cleanmark.holds(request), what
        assert stale_stages(request).stages == expected, what
        assert _plan(ws).stages == expected, f"{what}: DVC's verdict, not the mark's"
        record_all(_request(ws))  # settle again: DVC says clean, the mark is written
        assert _plan(ws).describe() == [] and cleanmark.holds(_request(ws)), what

    (ws / "dvc.lock").write_text((ws / "dvc.lock").read_text() + "# edited\n")
    assert not cleanmark.holds(_request(ws)), "dvc.lock edited by hand"
    assert not cleanmark.holds(_request(ws, ["gate.min_accuracy=0.7"])), "an override"


def test_code_and_environment_are_inputs_too(clean, monkeypatch, tmp_path):
    request = _request(clean)
    monkeypatch.setenv("QUANTFLOW_DATA", "remote")
    assert not cleanmark.holds(request), "data from the DVC remote is another question"
    monkeypatch.delenv("QUANTFLOW_DATA")
    assert cleanmark.holds(request)
    code = tmp_path / "pkg"
    (code / "sub").mkdir(parents=True)
    (code / "sub" / "m.py").write_text("x = 1\n")
    monkeypatch.setattr(cleanmark, "PACKAGE", code)
    cleanmark.write(request)
    assert cleanmark.holds(request)
    (code / "sub" / "m.py").write_text("x = 2\n")  # quantflow's code: dvc.yaml, toolchain
    assert not cleanmark.holds(request)


def test_a_run_that_committed_its_whole_plan_leaves_dvc_and_the_mark_agreeing(clean):
    ws = clean
    edit_spec(ws, lambda p: p["gate"].update(min_accuracy=0.6))
    plan = plan_run(_request(ws))
    assert plan.settles and plan.describe() == ["gate", "publish"]
    finish_run(plan, {})
    release(plan.request)
    assert status(ws) == {} and cleanmark.holds(_request(ws)), "written after the commit"

    edit_spec(ws, lambda p: p["variants"][0].update(kind="float16"))
    plan = plan_run(_request(ws))
    finish_run(plan, {"dr": "conversion failed"})  # a failed variant is not recorded
    release(plan.request)
    assert not cleanmark.holds(_request(ws)) and status(ws) != {}
    assert _plan(ws).variants == ["dr"], "DVC runs it again"


def test_a_no_op_run_opens_no_dvc_repo_and_imports_nothing_heavy(clean):
    """Only DVC's lock helpers (the pipeline's rwlock claim) are imported, not its repo."""
    probe = ("import sys\nfrom quantflow.cli import app\nsys.argv = ['quantflow', 'run']\n"
             "try:\n    app()\nexcept SystemExit as e:\n    print('EXIT', e.code)\n"
             "print('LOADED', sorted(set(sys.modules) & {'dvc.repo', 'networkx', 'prefect', "
             "'tensorflow', 'dvc.repo.status'}))\n")
    out = subprocess.run([sys.executable, "-c", probe], cwd=clean, capture_output=True,
                         text=True, timeout=120)
    assert "tiny: up to date" in out.stdout, out.stdout + out.stderr
    assert "EXIT 0\nLOADED []" in out.stdout, out.stdout
