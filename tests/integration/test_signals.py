"""Signals, servers and what a person reads, on real `quantflow run` subprocesses.

Each run is started in a session of its own, as a shell starts a job, and signals go to its
process group with os.killpg, as a terminal sends Ctrl-C. The run starts its own ephemeral
Prefect server (no PREFECT_API_URL). The run's processes (server, task workers, resource
tracker) are found with psutil while it runs and must all be gone afterwards.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import yaml

from quantflow.core.errors import Exit
from tests.integration.test_reliability import GITIGNORE, sh
from tests.tiny import tiny_spec, write_workspace

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PREFECT_URL = re.compile(r"Prefect API: (http://\S+)")


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """One HOME (so one Prefect database, migrated once) for the module; no PREFECT_API_URL,
    so every run starts its own ephemeral server."""
    home = tmp_path_factory.mktemp("home")
    out = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    out.update(HOME=str(home), PYTHONPATH=str(ROOT),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for who in ("AUTHOR", "COMMITTER"):
        out[f"GIT_{who}_NAME"], out[f"GIT_{who}_EMAIL"] = "quantflow test", "t@quantflow.invalid"
    return out


@dataclass
class Run:
    proc: subprocess.Popen
    log: Path
    started: float

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float = 300) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise AssertionError(f"no exit within {timeout}s:\n{self.output()[-3000:]}") from None


def start(ws: Path, env: dict[str, str], tag: str, *args: str) -> Run:
    log = ws.parent / f"{tag}.out"
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "quantflow.cli", "run", *args], cwd=ws,
                                env=env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return Run(proc, log, time.time())


def wait_for(run: Run, ready: Callable[[], bool], timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not ready():
        if run.proc.poll() is not None or time.time() > deadline:
            if run.proc.poll() is None:
                os.killpg(run.proc.pid, signal.SIGKILL)
            raise AssertionError(f"never got there (exit {run.proc.poll()}):\n"
                                 f"{run.output()[-3000:]}")
        time.sleep(0.02)


def in_quantize(ws: Path, run: Run) -> Callable[[], bool]:
    """A variant folder (re)created by this run that has no metrics yet."""
    variants = ws / "artifacts" / "tiny" / "variants"

    def ready() -> bool:
        try:
            return any(d.stat().st_mtime > run.started and not (d / "metrics.json").exists()
                       for d in variants.iterdir())
        except FileNotFoundError:
            return False
    return ready


def cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:  # gone meanwhile
        return ""


def helpers(run: Run) -> list[psutil.Process]:
    """The run's processes: its Prefect server, task workers and resource tracker."""
    procs = psutil.Process(run.proc.pid).children(recursive=True)
    lines = [cmdline(p) for p in procs]
    assert any("uvicorn" in c for c in lines), lines
    assert any("multiprocessing.spawn" in c for c in lines), lines
    return procs


def all_gone(procs: list[psutil.Process], within: float) -> float:
    """Seconds until every process is gone (zombies count as gone); fails after ``within``."""
    start = time.time()
    while time.time() - start < within:
        alive = [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return time.time() - start
        time.sleep(0.05)
    raise AssertionError(f"still running: {[cmdline(p)[:80] for p in alive]}")


def lock_is_free(ws: Path) -> bool:
    with open(ws / "artifacts" / ".tiny.lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
    return True


def locked_stages(ws: Path) -> set[str]:
    lock = ws / "dvc.lock"
    return set((yaml.safe_load(lock.read_text()) or {}).get("stages", {})) if lock.exists() \
        else set()


def unfinished(ws: Path) -> set[str]:
    variants = ws / "artifacts" / "tiny" / "variants"
    return {d.name for d in variants.iterdir() if not (d / "metrics.json").exists()}


def published(ws: Path) -> list[str]:
    reg = ws / "registry" / "tiny"
    return sorted(p.name for p in reg.iterdir()) if reg.is_dir() else []


@pytest.fixture(scope="module")
def dvc_ws(env, tmp_path_factory) -> Path:
    """A git + DVC project; evaluation times 20,000 runs, so quantize lasts long enough to be
    caught in the middle."""
    ws = tmp_path_factory.mktemp("signals") / "ws"
    spec = tiny_spec()
    spec["pipelines"]["tiny"]["evaluation"]["timed_runs"] = 20000
    write_workspace(ws, spec)
    sh(ws, env, "git", "init", "-q")
    sh(ws, env, "dvc", "init", "-q")
    shutil.copy(ROOT / ".dvc" / "config", ws / ".dvc" / "config")
    (ws / ".gitignore").write_text(GITIGNORE)
    sh(ws, env, sys.executable, "-m", "quantflow.cli", "dvc")
    sh(ws, env, "git", "add", "-A")
    sh(ws, env, "git", "commit", "-q", "-m", "tiny pipeline")
    return ws


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, Exit.INTERRUPTED),
                                       (signal.SIGTERM, Exit.TERMINATED)],
                         ids=["SIGINT", "SIGTERM"])
def test_a_signal_in_quantize_stops_the_run_cleanly(dvc_ws, env, sig, code):
    ws = dvc_ws
    before = published(ws)
    run = start(ws, env, f"signal-{sig.name}")
    wait_for(run, in_quantize(ws, run))
    procs = helpers(run)
    sent = time.time()
    os.killpg(run.proc.pid, sig)
    assert run.wait(60) == code
    took = time.time() - sent
    out = run.output()
    gone = all_gone(procs, within=5)
    print(f"{sig.name}: exit {code} {took:.1f} s after the signal; helpers gone "
          f"{gone:.1f} s later")
    assert took < 20, out[-3000:]
    assert "interrupted" in out and "Traceback" not in out and "Exception ignored" not in out
    assert lock_is_free(ws)
    stages = locked_stages(ws)
    assert {"tiny-prepare", "tiny-train", "tiny-export"} <= stages  # finished before it
    left = unfinished(ws)
    assert left and not {f"tiny-quantize-{v}" for v in left} & stages, (left, stages)
    assert not {"tiny-gate", "tiny-publish"} & stages
    assert published(ws) == before


def test_sigkill_of_the_run_takes_its_server_and_workers_along(dvc_ws, env):
    ws = dvc_ws
    run = start(ws, env, "sigkill-main")
    wait_for(run, in_quantize(ws, run))
    procs = helpers(run)
    os.kill(run.proc.pid, signal.SIGKILL)  # the main process only
    run.wait(10)
    gone = all_gone(procs, within=5)
    print(f"SIGKILL of the main process: server and workers gone {gone:.1f} s later")
    assert lock_is_free(ws)


def test_a_dead_prefect_server_stops_the_run_with_one_line(dvc_ws, env):
    ws = dvc_ws
    stages_before = locked_stages(ws)
    run = start(ws, env, "server-killed")
    wait_for(run, in_quantize(ws, run))
    procs = helpers(run)
    [server] = [p for p in procs if "uvicorn" in cmdline(p)]
    url = PREFECT_URL.search(run.output()).group(1)
    killed = time.time()
    server.kill()
    assert run.wait(60) == Exit.ERROR
    took = time.time() - killed
    out = run.output()
    print(f"Prefect server killed: exit 1 {took:.1f} s later")
    assert took < 20, out[-3000:]
    assert f"the Prefect server at {url} went away" in out, out[-3000:]
    assert "Traceback" not in out and "ConnectError" not in out
    all_gone(procs, within=5)
    assert lock_is_free(ws)
    assert not {f"tiny-quantize-{v}" for v in unfinished(ws)} & (locked_stages(ws)
                                                                 - stages_before)


def test_a_failed_variant_is_one_line_with_the_log_and_no_tensorflow_noise(env, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    subprocess.run([sys.executable, "-c", "import sys, pathlib; from tests.integration."
                    "test_reliability import conv3d_model; conv3d_model(pathlib.Path(sys.argv[1]))",
                    str(ws / "user.keras")], cwd=ROOT, env=env, check=True, capture_output=True)
    write_workspace(ws, tiny_spec(model={"path": "user.keras"},
                                  variants=[{"name": "dr", "kind": "dynamic_range"},
                                            {"name": "a16", "kind": "int16x8"}]))
    run = start(ws, env, "failed-variant")
    assert run.wait() == Exit.VARIANT_FAILED
    out = run.output()
    message = "Quantization to 16x8-bit not yet supported for op: 'CONV_3D'"
    live = [line for line in out.splitlines() if message in line]
    log = re.search(r"\(log: (artifacts/tiny/logs/run-[^)]+\.log)\)", live[0]).group(1)
    print(f"failed variant: {len(out.splitlines())} lines in all; the converter's message on "
          f"{len(live)} (as it happens, then in the summary)")
    assert len(live) == 2 and "quantize tiny/a16 failed" in live[0], out
    for noise in ("Traceback", "cuInit", "Task run failed with exception",
                  "Finished in state Failed", "XNNPACK", "UserWarning"):
        assert noise not in out, noise
    full = (ws / log).read_text()
    assert "Traceback" in full and message in full


def test_a_dynamic_batch_rnn_is_one_clear_line_not_the_converters_text(env, tmp_path):
    """A SimpleRNN with a dynamic batch: TF 2.21's converter refuses it with a TensorList
    message; quantflow says how to fix the model instead, in one line with the log path, and
    exits 2 (the user's model). Square brackets in library text are kept: tests/test_runner.py
    feeds the converter's `[tf.lite.OpsSet...]` advice through the same path."""
    ws = tmp_path / "ws"
    ws.mkdir()
    subprocess.run([sys.executable, "-c", "import sys; from quantflow.core.tfenv import "
                    "tf_modules; k = tf_modules()[1]; L = k.layers; k.Sequential(["
                    "L.InputLayer(input_shape=(8, 8)), L.SimpleRNN(8), L.Dense(10)]"
                    ").save(sys.argv[1])", str(ws / "rnn.keras")],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    write_workspace(ws, tiny_spec(model={"path": "rnn.keras"}))
    run = start(ws, env, "rnn")
    assert run.wait() == Exit.SPEC
    out = run.output()
    [line] = [line for line in out.splitlines() if "needs a static batch size" in line]
    assert "batch_size=1" in line and "(log: artifacts/tiny/logs/run-" in line, line
    assert "Traceback" not in out and "oneDNN" not in out and "TensorList" not in out


def test_a_data_error_is_one_line_and_exit_2(env, tmp_path):
    import numpy as np
    from sklearn.datasets import load_digits

    ws = tmp_path / "ws"
    ws.mkdir()
    digits = load_digits()
    x = digits.images.astype(np.float32)
    x[3, 2, 1] = np.nan
    np.savez(ws / "d.npz", x=x, y=digits.target)
    write_workspace(ws, tiny_spec(dataset={"source": "npz", "path": "d.npz",
                                           "train_size": 600, "test_size": 200}))
    run = start(ws, env, "data-error")
    assert run.wait() == Exit.SPEC
    out = run.output()
    # The runner's deep check (quantflow.domain.inspect) finds it before Prefect starts; a
    # DataError raised inside a step of a run is tests/test_runner.py's.
    [line] = [line for line in out.splitlines() if "NaN/Inf" in line]
    assert line.startswith("tiny: data: dataset: 1 NaN/Inf input values (first at [3, 2, 1])"), \
        line
    assert "Prefect API" not in out, out
    assert "Traceback" not in out and "unexpected" not in out
