"""`dvc repro` and `quantflow run` in one workspace, with real processes: either side refuses
at once, in one line, and neither leaves the other's files or DVC's records broken.

The fast tests use the tiny pipeline with placeholder outputs (DVC's bookkeeping needs no
model); the slow ones race a real `dvc repro` against real `quantflow run`s and back.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from quantflow.core.errors import Exit
from quantflow.core.request import load_request
from quantflow.orchestration.plan import REPRO, pipeline_lock
from tests.integration.test_dvc import commit_all, edit_spec, fake_outputs, sh, status
from tests.integration.test_dvc_staleness import make_repo, record_all
from tests.tiny import tiny_spec

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent
HOLD_PIPELINE = """\
import sys, time
from quantflow.core.request import load_request
from quantflow.orchestration.plan import REPRO, pipeline_lock
with pipeline_lock(load_request(".", "pipelines.yaml", [], "tiny")):
    print("held", flush=True)
    time.sleep(float(sys.argv[1]))
"""
# DVC's repository lock, as `dvc repro` holds it between two stages (its arguments stand in
# for a `dvc repro` command line).
HOLD_DVC_LOCK = """\
import sys, time
from dvc.repo import Repo
repo = Repo(".")
repo.lock.lock()
print("held", flush=True)
time.sleep(float(sys.argv[1]))
"""


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Path:
    root = make_repo(tmp_path / "ws", tiny_spec(variants=[{"name": "dr",
                                                           "kind": "dynamic_range"}]),
                     monkeypatch)
    sh(root, "quantflow", "dvc")
    commit_all(root, "tiny pipeline")
    fake_outputs(root)
    record_all(root)
    return root


def run(ws: Path, *args: str, timeout: float = 300) -> tuple[int, str, float]:
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=ws, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - start


def start(ws: Path, *args: str) -> subprocess.Popen:
    """A background process that prints "held" once it holds what it holds."""
    proc = subprocess.Popen(args, cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def snapshot(ws: Path) -> dict[str, str]:
    """Every output (not the lock files beside them)."""
    return {str(p.relative_to(ws)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted((ws / "artifacts").rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


def one_line(output: str, text: str) -> str:
    lines = [ln for ln in output.splitlines() if text in ln]
    assert len(lines) == 1 and "Traceback" not in output, output[-3000:]
    return lines[0]


def test_dvc_repro_and_quantflow_step_refuse_while_quantflow_run_holds_the_pipeline(ws):
    edit_spec(ws, lambda p: p["gate"].update(min_accuracy=0.6))  # gate + publish are stale
    sh(ws, "quantflow", "dvc")
    before = snapshot(ws)
    holder = start(ws, sys.executable, "-c", HOLD_PIPELINE, "60")
    try:
        assert (ws / "artifacts" / ".tiny.lock").read_text() == f"quantflow run (pid {holder.pid})"
        code, out, seconds = run(ws, "dvc", "repro")
        assert code != 0 and f"(PID {holder.pid})" in out and "is busy" in out, out
        assert snapshot(ws) == before, "dvc repro deleted or rewrote an output"
        print(f"dvc repro refused in {seconds:.1f}s")

        code, out, seconds = run(ws, "quantflow", "step", "gate", "tiny")
        assert code == Exit.BUSY, out
        assert one_line(out, "is running") == (
            f"quantflow run is running in this workspace (pid {holder.pid}); wait for it to "
            "finish (pipeline 'tiny')")
        print(f"quantflow step refused in {seconds:.1f}s")
    finally:
        holder.kill()
        holder.wait()
    # a holder killed -9 leaves its entries in DVC's rwlock; DVC drops those of dead pids
    assert set(status(ws)) == {"tiny-gate", "tiny-publish"}


def test_the_run_records_its_steps_through_its_own_claim(ws):
    """The flow's `dvc commit`s pass the rwlock entries its own process holds."""
    edit_spec(ws, lambda p: p["gate"].update(min_accuracy=0.6))
    with pipeline_lock(load_request(ws, "pipelines.yaml", [], "tiny")):
        record_all(ws)
        code, out, _ = run(ws, "dvc", "status")
        assert code != 0 and "is busy" in out, "another process's DVC waits its turn"
    assert status(ws) == {}


def test_quantflow_run_refuses_while_dvc_repro_runs_a_stage(ws):
    """During a stage's command DVC releases its lock; its rwlock entries remain."""
    dvc_yaml = yaml.safe_load((ws / "dvc.yaml").read_text())
    dvc_yaml["stages"] = {"slow": {"cmd": "echo he''ld && sleep 30 && echo x > slow.txt",
                                   "outs": ["slow.txt"]}, **dvc_yaml["stages"]}
    (ws / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    sh(ws, "quantflow", "dvc")
    assert "slow" in yaml.safe_load((ws / "dvc.yaml").read_text())["stages"]
    repro = subprocess.Popen(["dvc", "repro", "slow"], cwd=ws, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        while "held" not in (line := repro.stdout.readline()):
            assert line, "dvc repro ended before its stage ran"
        code, out, seconds = run(ws, "quantflow", "run")
        assert code == Exit.BUSY, out
        assert one_line(out, "is running") == (
            f"dvc repro is running in this workspace (pid {repro.pid}); wait for it to finish")
        assert "Prefect API" not in out, "refused before starting anything"
        print(f"quantflow run refused in {seconds:.1f}s")
        code, out, _ = run(ws, "quantflow", "step", "gate", "tiny")
        assert code == Exit.BUSY and f"dvc repro is running in this workspace (pid {repro.pid})" \
            in out, out
    finally:
        os.killpg(repro.pid, signal.SIGKILL)  # the stage's shell and its sleep too
        repro.wait()


def test_quantflow_run_refuses_between_two_steps_of_dvc_repro_and_waits_for_dvc_status(ws):
    holder = start(ws, sys.executable, "-c", HOLD_DVC_LOCK, "30", "dvc", "repro")
    try:
        code, out, _ = run(ws, "quantflow", "run")
        assert code == Exit.BUSY, out
        assert one_line(out, "is running") == (
            f"dvc repro is running in this workspace (pid {holder.pid}); wait for it to finish")
    finally:
        holder.kill()
        holder.wait()
    holder = start(ws, sys.executable, "-c", HOLD_DVC_LOCK, "4", "dvc", "status")
    code, out, seconds = run(ws, "quantflow", "run")
    holder.wait()
    assert code == Exit.OK and "up to date" in out, out
    assert seconds > 2, "a short DVC command is waited for, not refused"


def test_a_corrupt_rwlock_is_one_line_naming_the_file(ws):
    rwlock = ws / ".dvc" / "tmp" / "rwlock"
    rwlock.write_text('{"write": {"' + str(ws / "artifacts"))  # cut short mid-rewrite
    for args in (["quantflow", "run"], ["quantflow", "step", "gate", "tiny"]):
        code, out, _ = run(ws, *args)
        assert code == Exit.ERROR, out
        line = one_line(out, "rwlock")
        assert line == (f"{rwlock} is corrupted (not valid JSON: a DVC process probably stopped "
                        "while rewriting it); it is safe to remove when no DVC process is "
                        f"running in this workspace: rm {rwlock}"), out
    rwlock.unlink()
    code, out, _ = run(ws, "quantflow", "run")
    assert code == Exit.OK and "up to date" in out, out


# ------------------------------------------------------------------ real races (TensorFlow)
def attempts_while(proc: subprocess.Popen, ws: Path, *args: str,
                   holds=lambda: True) -> list[tuple[int, str]]:
    """Run ``args`` again and again while ``proc`` runs; keep those that ended while it still
    ``holds`` the workspace."""
    done = []
    while proc.poll() is None:
        code, out, _ = run(ws, *args)
        if proc.poll() is None and holds():
            done.append((code, out))
        time.sleep(0.3)
    return done


@pytest.fixture
def fresh(tmp_path, monkeypatch, prefect_harness) -> Path:
    root = make_repo(tmp_path / "ws", tiny_spec(variants=[{"name": "dr",
                                                           "kind": "dynamic_range"}]),
                     monkeypatch)
    sh(root, "quantflow", "dvc")
    commit_all(root, "tiny pipeline")
    return root


@pytest.mark.slow
def test_quantflow_run_refuses_throughout_a_real_dvc_repro(fresh):
    repro = subprocess.Popen(["dvc", "repro"], cwd=fresh, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    # From its first step on: a `quantflow run` that starts before DVC has taken anything
    # (DVC's imports take a second; a no-op-fast run's check takes less) rightly gets the
    # pipeline, and the repro's first step is then the one refused.
    lock = fresh / "artifacts" / ".tiny.lock"
    while repro.poll() is None and REPRO not in (lock.read_text() if lock.exists() else ""):
        time.sleep(0.05)
    tries = attempts_while(repro, fresh, "quantflow", "run")
    log = repro.stdout.read()
    assert repro.returncode == 0, log[-3000:]
    lines = {one_line(out, "is running") for _, out in tries}
    print(f"{len(tries)} quantflow runs during dvc repro, all refused: {lines}")
    assert tries and all(code == Exit.BUSY for code, _ in tries), tries[-1][1][-3000:]
    assert lines == {f"dvc repro is running in this workspace (pid {repro.pid}); "
                     "wait for it to finish"}
    assert status(fresh) == {}
    code, out, _ = run(fresh, "quantflow", "run")
    assert code == Exit.OK and "up to date" in out, out


@pytest.mark.slow
def test_dvc_repro_refuses_throughout_a_real_quantflow_run(fresh):
    sh(fresh, "dvc", "repro")
    edit_spec(fresh, lambda p: p["gate"].update(min_accuracy=0.6))  # something for DVC to do
    sh(fresh, "quantflow", "dvc")
    log = fresh.parent / "run.log"
    with open(log, "w") as f:
        qf = subprocess.Popen([str(BIN / "quantflow"), "run", "--force"], cwd=fresh, stdout=f,
                              stderr=subprocess.STDOUT)
    rwlock = fresh / ".dvc" / "tmp" / "rwlock"

    def claimed() -> bool:  # from the check before Prefect starts to the end of the flow
        return f'"pid": {qf.pid}' in (rwlock.read_text() if rwlock.exists() else "")

    while qf.poll() is None and not claimed():
        time.sleep(0.05)
    tries = attempts_while(qf, fresh, "dvc", "repro", holds=claimed)
    assert qf.returncode == Exit.OK, log.read_text()[-3000:]
    print(f"{len(tries)} dvc repros during quantflow run, all refused")
    assert tries and all(code != 0 and f"(PID {qf.pid})" in out and "is busy" in out
                         for code, out in tries), tries[-1][1][-3000:]
    assert status(fresh) == {}, "the run recorded everything, the gate edit included"
    assert sh(fresh, "quantflow", "verify", "registry")


def test_an_up_to_date_pipeline_is_let_go_at_once(ws):
    """`quantflow run` takes a pipeline when it checks it; with nothing to run, no flow takes
    it over, so it is released right after planning, not when the process exits."""
    from typer.testing import CliRunner

    from quantflow.cli import app

    result = CliRunner().invoke(app, ["run", "--spec", str(ws / "pipelines.yaml")])
    assert result.exit_code == Exit.OK and "up to date" in result.output, result.output
    assert (ws / "artifacts" / ".tiny.lock").read_text() == ""
    code, out, _ = run(ws, "dvc", "repro")  # in this process's lifetime: not refused
    assert code == 0 and "up to date" in out, out
