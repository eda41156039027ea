"""Faults during real runs: a variant the converter cannot build, `kill -9` at chosen points,
and two `quantflow run` processes on one pipeline at once.

Everything is real: TensorFlow conversions, the LiteRT interpreter, the session's Prefect server
(the harness), `quantflow run` subprocesses, git + DVC in a temporary repository. A kill point
is found by polling for the artifact files the run writes; the whole process group (the run
and its task workers) gets SIGKILL, as on a power cut.
"""

from __future__ import annotations

import json
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

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from quantflow.cli import app
from quantflow.core.errors import Exit
from quantflow.domain.registry import list_versions, resolve_alias
from quantflow.domain.verify import verify
from tests.tiny import tiny_spec, write_workspace

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GITIGNORE = "/artifacts/**\n!/artifacts/*/\n!/artifacts/*/metrics.json\n" \
            "!/artifacts/*/variants.csv\n!/artifacts/*/publish.json\n/registry/\n"


# ----------------------------------------------------------------------------- failed variant
def conv3d_model(path: Path) -> None:
    """A small trained digits classifier with a Conv3D: CONV_3D has float kernels only, so
    int16x8 conversion fails and int8 conversion keeps float weights; dynamic range works."""
    from sklearn.datasets import load_digits

    from quantflow.core.tfenv import tf_modules

    _, keras = tf_modules()
    digits = load_digits()
    x, y = (digits.images / 16.0).astype(np.float32), digits.target
    keras.utils.set_random_seed(0)
    layers = keras.layers
    model = keras.Sequential([
        layers.InputLayer(input_shape=(8, 8)), layers.Dense(16, activation="relu"),
        layers.Reshape((8, 16, 1, 1)), layers.Conv3D(4, (3, 3, 1), activation="relu"),
        layers.Flatten(), layers.Dense(10),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.01), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=15, batch_size=64, verbose=0)
    model.save(path)


def test_failed_variants_are_recorded_and_the_others_published(prefect_harness, tmp_path,
                                                               monkeypatch):
    """In a git + DVC repository: a failed variant must not be recorded in dvc.lock."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (tmp_path / "home").mkdir()
    env = run_env(tmp_path / "home")
    monkeypatch.setenv("HOME", env["HOME"])  # the in-process run's DVC remote lands in tmp
    # In a subprocess: TensorFlow in this process would leave absl's log handler on pytest's
    # captured stderr, and Prefect's logging setup closes that handler (and the stream).
    subprocess.run([sys.executable, "-c", "import sys, pathlib; from tests.integration."
                    "test_reliability import conv3d_model; conv3d_model(pathlib.Path(sys.argv[1]))",
                    str(ws / "user.keras")], cwd=ROOT, check=True, capture_output=True)
    spec = write_workspace(ws, tiny_spec(
        model={"path": "user.keras"},
        variants=[{"name": "dr", "kind": "dynamic_range"},
                  {"name": "i8", "kind": "int8", "io_type": "int8"},
                  {"name": "a16", "kind": "int16x8"}]))
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        sh(ws, env, *cmd)
    shutil.copy(ROOT / ".dvc" / "config", ws / ".dvc" / "config")
    (ws / ".gitignore").write_text(GITIGNORE)
    sh(ws, env, "quantflow", "dvc")
    result = CliRunner().invoke(app, ["run", "--spec", str(spec), "--force"],
                                catch_exceptions=False)
    assert result.exit_code == Exit.VARIANT_FAILED, result.output
    assert "failed variants: i8, a16" in result.output, result.output
    lock = set(yaml.safe_load((ws / "dvc.lock").read_text())["stages"])
    assert {"tiny-quantize-dr", "tiny-gate", "tiny-publish"} <= lock, lock
    assert not lock & {"tiny-quantize-i8", "tiny-quantize-a16"}, "a failed variant was recorded"

    art = ws / "artifacts" / "tiny"
    a16 = json.loads((art / "variants" / "a16" / "metrics.json").read_text())
    i8 = json.loads((art / "variants" / "i8" / "metrics.json").read_text())
    converter_message = "Quantization to 16x8-bit not yet supported for op: 'CONV_3D'"
    assert a16["status"] == "failed" and converter_message in a16["error"]
    assert i8["status"] == "failed" and "float32 weights, expected none" in i8["error"]
    report = (art / "report.md").read_text()
    assert converter_message in report and "### a16 (int16x8)" in report
    assert "**Selected for publishing:** dr" in report

    reg = ws / "registry" / "tiny"
    [version] = list_versions(reg)
    assert resolve_alias(reg, "latest") == version
    manifest = json.loads((reg / version / "manifest.json").read_text())
    assert sorted(manifest["files"]) == ["dr.tflite"]
    assert converter_message in manifest["metrics"]["a16"]["error"]
    assert verify(ws / "registry") == []


# ----------------------------------------------------------------------------- subprocess runs
def run_env(home: Path) -> dict[str, str]:
    env = dict(os.environ, HOME=str(home), PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    for who in ("AUTHOR", "COMMITTER"):
        env[f"GIT_{who}_NAME"] = "quantflow test"
        env[f"GIT_{who}_EMAIL"] = "test@quantflow.invalid"
    return env


def sh(ws: Path, env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(args, cwd=ws, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{args}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    return proc.stdout


@dataclass
class Run:
    proc: subprocess.Popen
    log: Path
    started: float

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_run(ws: Path, env: dict[str, str], tag: str, *args: str) -> Run:
    """`quantflow run` in its own session, so SIGKILL can take its task workers too."""
    log = ws.parent / f"run-{tag}.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([str(BIN / "quantflow"), "run", *args], cwd=ws, env=env,
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    return Run(proc, log, time.time())


def kill_when(run: Run, ready: Callable[[], bool], timeout: float = 600) -> bool:
    """SIGKILL the run's process group as soon as ``ready()``; False if it ended first."""
    deadline = time.time() + timeout
    while time.time() < deadline and run.proc.poll() is None:
        if ready():
            os.killpg(run.proc.pid, signal.SIGKILL)
            run.proc.wait()
            return True
        time.sleep(0.001)
    if run.proc.poll() is None:
        os.killpg(run.proc.pid, signal.SIGKILL)
        run.proc.wait()
        raise AssertionError(f"no kill point within {timeout}s:\n{run.output()[-3000:]}")
    return False


def newer(path: Path, than: float, by: float = 0.0) -> bool:
    """``path`` was written after ``than`` and at least ``by`` seconds ago."""
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return False
    return mtime > than and time.time() - mtime >= by


def ran_stages(output: str) -> list[str]:
    """The stages a run said it would run ("tiny: running prepare, train, ...")."""
    m = re.search(r"tiny: running ([\w:, -]+)", output)
    return m.group(1).split(", ") if m else []


@pytest.fixture(scope="module")
def dvc_ws(prefect_harness, tmp_path_factory):
    """A git + DVC repository holding the tiny pipeline, like a user's project. Training runs
    30 epochs and evaluation times 20,000 single-sample runs, so that both last long enough
    to be caught in the middle by polling."""
    root = tmp_path_factory.mktemp("reliability")
    (root / "home").mkdir()
    env = run_env(root / "home")
    ws = root / "ws"
    spec = tiny_spec()
    spec["pipelines"]["tiny"]["evaluation"]["timed_runs"] = 20000
    spec["pipelines"]["tiny"]["train"]["epochs"] = 30
    write_workspace(ws, spec)
    sh(ws, env, "git", "init", "-q")
    sh(ws, env, "dvc", "init", "-q")
    shutil.copy(ROOT / ".dvc" / "config", ws / ".dvc" / "config")
    (ws / ".gitignore").write_text(GITIGNORE)
    sh(ws, env, "quantflow", "dvc")
    sh(ws, env, "git", "add", "-A")
    sh(ws, env, "git", "commit", "-q", "-m", "tiny pipeline")
    return ws, env


# ----------------------------------------------------------------------------- concurrent runs
@pytest.fixture(scope="module")
def concurrent(dvc_ws):
    """Two `quantflow run` processes started together on the same pipeline."""
    ws, env = dvc_ws
    runs = [start_run(ws, env, f"concurrent-{i}") for i in range(2)]
    for r in runs:
        r.proc.wait(timeout=900)
    return [(r.proc.returncode, r.output()) for r in runs]


def test_two_concurrent_runs_one_completes_the_other_refuses(dvc_ws, concurrent):
    ws, _ = dvc_ws
    codes = sorted(code for code, _ in concurrent)
    outputs = "\n".join(out for _, out in concurrent)
    assert codes in ([Exit.OK, Exit.BUSY], [Exit.OK, Exit.OK]), outputs[-6000:]
    if codes == [Exit.OK, Exit.BUSY]:
        busy = next(out for code, out in concurrent if code == Exit.BUSY)
        assert "quantflow run is running in this workspace (pid " in busy, busy[-3000:]
    reg = ws / "registry" / "tiny"
    versions = list_versions(reg)
    # a second run after the first republishes identical bytes only as "unchanged"
    assert 1 <= len(versions) <= codes.count(Exit.OK)
    assert resolve_alias(reg, "latest") == versions[-1]
    assert verify(ws / "registry") == []


# ----------------------------------------------------------------------------- kill -9
def assert_intact(ws: Path, before: list[str], alias: str, may_add: bool = False) -> list[str]:
    """No partial version, nothing lost, the alias names a complete version."""
    reg = ws / "registry" / "tiny"
    assert verify(ws / "registry") == []
    versions = list_versions(reg)
    assert versions[: len(before)] == before, "a published version was lost or reordered"
    assert len(versions) <= len(before) + (1 if may_add else 0), versions
    assert resolve_alias(reg, "latest") in ({alias} | set(versions[len(before):]))
    return versions


def temp_folders(reg: Path) -> set[str]:
    """Publish builds each version in a dot-prefixed temp folder of the registry."""
    return {p.name for p in reg.iterdir() if p.name.startswith(".tmp-")} if reg.is_dir() \
        else set()


def test_kill_9_inside_publish_never_leaves_a_partial_version(dvc_ws, concurrent):
    """`quantflow step publish` (what the DVC stage runs) is cheap, so it is killed many times:
    when its temp folder appears, plus 0, 0.5, 1, ... ms, to land at different points of
    copying, hashing, fsync, rename and the alias swap."""
    ws, env = dvc_ws
    reg = ws / "registry" / "tiny"
    before, alias = list_versions(reg), resolve_alias(reg, "latest")
    outcomes = {"inside": 0, "after": 0}
    for i in range(12):
        old = temp_folders(reg)
        log = ws.parent / f"step-publish-{i}.log"
        with open(log, "w") as f:  # a fresh alias each time: the same bytes under the same
            # alias would be "unchanged" and build nothing to kill
            proc = subprocess.Popen([str(BIN / "quantflow"), "step", "publish", "tiny", "--set",
                                     f"publish.alias=kill{i}"], cwd=ws, env=env, stdout=f,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        while proc.poll() is None and not temp_folders(reg) - old:
            time.sleep(0.0002)
        time.sleep(0.0005 * i)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        left = temp_folders(reg) - old
        outcomes["inside" if left else "after"] += 1
        before = assert_intact(ws, before, alias, may_add=not left)
        alias = resolve_alias(reg, "latest")
    print(f"step publish: 12 kills: {outcomes}")
    assert outcomes["inside"] >= 1, outcomes


@pytest.mark.timeout(3000)
def test_kill_9_at_each_point_leaves_the_registry_intact(dvc_ws, concurrent):
    ws, env = dvc_ws
    art, reg = ws / "artifacts" / "tiny", ws / "registry" / "tiny"
    before = list_versions(reg)
    alias = resolve_alias(reg, "latest")
    assert before and alias, "the concurrent runs published nothing"

    dr = art / "variants" / "dr"
    points: dict[str, Callable[[float], bool]] = {  # each: "now is inside that step"
        "train": lambda t: newer(art / "prepare" / "info.json", t, by=1.0) and not newer(
            art / "train" / "model.keras", t),
        # quantize removes the variant's folder first: no model.tflite after this run's export
        # means the conversion is under way (from one SavedModel it takes well under a second)
        "conversion": lambda t: newer(art / "export" / "metrics.json", t) and not (
            dr / "model.tflite").exists(),
        "evaluation": lambda t: newer(art / "export" / "metrics.json", t) and (
            dr / "model.tflite").exists() and not (dr / "metrics.json").exists(),
        "publish": lambda t: bool(temp_folders(reg) - stale_temp),
    }
    stale_temp = temp_folders(reg)  # left by earlier kills inside publish
    hit = {}
    for point, ready in points.items():
        run = start_run(ws, env, f"kill-{point}", "--force")
        hit[point] = kill_when(run, lambda r=run, f=ready: f(r.started))
        if point == "publish" and hit[point]:
            hit[point] = "inside" if temp_folders(reg) - stale_temp else "after the rename"
        assert hit[point] or run.proc.returncode == Exit.OK, run.output()[-3000:]
        before = assert_intact(ws, before, alias, may_add=point == "publish" or not hit[point])
        alias = resolve_alias(reg, "latest")
    print(f"kill points hit: {hit}")
    assert all(hit[p] for p in ("train", "conversion", "evaluation")), hit

    final = start_run(ws, env, "after-kills")
    final.proc.wait(timeout=900)
    out = final.output()
    assert final.proc.returncode == Exit.OK, out[-4000:]
    assert "already running" not in out
    after = assert_intact(ws, before, alias, may_add=True)
    print(f"run after the kills ran: {ran_stages(out) or 'nothing (up to date)'}")
    assert "prepare" not in ran_stages(out), "prepare's outputs were unchanged by the kills"
    if ran_stages(out):  # a new version, or "unchanged" if retraining gave the same bytes
        unchanged = "unchanged: already published as" in out
        assert len(after) == len(before) + (0 if unchanged else 1), out[-3000:]
        assert resolve_alias(reg, "latest") == (alias if unchanged else after[-1])
