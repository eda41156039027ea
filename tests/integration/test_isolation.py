"""One failing variant must not take the others down, and a failure is never recorded as done.

Real runs of the tiny pipeline: a variant whose worker process SIGKILLs itself and one whose
folder cannot be written, in a git + DVC repository (`quantflow run` subprocesses against the
session's Prefect server); and a variant that hangs past `execution.variant_timeout_seconds`,
with the flow called in-process as a deployment's flow run calls it (no plan handed over). The
faults come from the test-only hooks of quantflow/steps/quantize.py (QUANTFLOW_TEST_*_VARIANT).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from quantflow.core.errors import Exit
from quantflow.domain.registry import list_versions, resolve_alias
from quantflow.domain.verify import verify
from tests.integration.test_dvc import GITIGNORE, commit_all, sh, status
from tests.tiny import tiny_spec, write_workspace

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git + DVC repository with three variants: `k` (first, so it dies while `dr` runs on
    the other worker), `dr` and `blk`."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the DVC remote lands in tmp
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "quantflow test")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "test@quantflow.invalid")
    ws = tmp_path / "ws"
    write_workspace(ws, tiny_spec(variants=[
        {"name": "k", "kind": "dynamic_range"}, {"name": "dr", "kind": "dynamic_range"},
        {"name": "blk", "kind": "float16"}]))
    sh(ws, "git", "init", "-q")
    sh(ws, "dvc", "init", "-q")
    shutil.copy(ROOT / ".dvc" / "config", ws / ".dvc" / "config")
    (ws / ".gitignore").write_text(GITIGNORE)
    sh(ws, "quantflow", "dvc")
    commit_all(ws, "tiny pipeline")
    return ws


def quantflow_run(ws: Path, **env: str) -> tuple[int, str]:
    done = subprocess.run([str(BIN / "quantflow"), "run"], cwd=ws, capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=400)
    return done.returncode, done.stdout + done.stderr


def ran(output: str) -> list[str]:
    m = re.search(r"tiny: running ([\w:, -]+)", output)
    return m.group(1).split(", ") if m else []


def locked(ws: Path) -> set[str]:
    return set(yaml.safe_load((ws / "dvc.lock").read_text())["stages"])


def published_files(ws: Path) -> list[str]:
    reg = ws / "registry" / "tiny"
    version = resolve_alias(reg, "latest")
    return sorted(json.loads((reg / version / "manifest.json").read_text())["files"])


def test_a_killed_worker_and_an_unwritable_folder_fail_alone_and_run_again(prefect_harness,
                                                                           repo: Path):
    art = repo / "artifacts" / "tiny"
    blocker = art / "variants" / "blk"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("in the way\n")  # as on a full disk: the step cannot write its folder

    code, out = quantflow_run(repo, QUANTFLOW_TEST_KILL_VARIANT="k")
    assert code == Exit.VARIANT_FAILED, out[-4000:]
    assert "failed variants: k, blk" in out, out[-3000:]
    k = json.loads((art / "variants" / "k" / "metrics.json").read_text())
    assert k["status"] == "failed" and k["error"] == "worker killed by SIGKILL", k
    assert not (art / "variants" / "k" / "model.tflite").exists(), "a half-made model stays"
    report = (art / "report.md").read_text()
    assert "worker killed by SIGKILL" in report and "FileExistsError" in report, report
    assert published_files(repo) == ["dr.tflite"]
    assert verify(repo / "registry") == []
    lock = locked(repo)
    assert {"tiny-quantize-dr", "tiny-gate", "tiny-publish"} <= lock
    assert not lock & {"tiny-quantize-k", "tiny-quantize-blk"}, "a failed variant was recorded"
    assert {"tiny-quantize-k", "tiny-quantize-blk"} <= set(status(repo))

    blocker.unlink()  # space freed
    code, out = quantflow_run(repo)
    assert code == Exit.OK, out[-4000:]
    assert ran(out) == ["quantize:k", "quantize:blk", "gate", "publish"], out[-3000:]
    assert published_files(repo) == ["blk.tflite", "dr.tflite", "k.tflite"]
    assert len(list_versions(repo / "registry" / "tiny")) == 2
    assert status(repo) == {}


def test_a_hung_variant_is_killed_after_its_timeout_on_a_pool_sized_from_the_spec(
        prefect_harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`execution.max_workers: 3` must size a deployment's pool too: the flow is called as a
    deployment's flow run calls it, and the pool it made is inspected."""
    from flows.quantize import RunOptions, Target, quantize_pipeline
    from quantflow.orchestration import taskrunner

    spec = tiny_spec(variants=[{"name": "h", "kind": "dynamic_range"},
                               {"name": "dr", "kind": "dynamic_range"},
                               {"name": "i8", "kind": "int8", "io_type": "int8"}])
    spec["execution"].update(max_workers=3, variant_timeout_seconds=40)
    ws = write_workspace(tmp_path / "ws", spec).parent
    pools: list[taskrunner.WarmPool] = []

    class Recorded(taskrunner.WarmPool):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            pools.append(self)

    monkeypatch.setattr(taskrunner, "WarmPool", Recorded)
    monkeypatch.setenv("QUANTFLOW_TEST_HANG_VARIANT", "h")
    summary = quantize_pipeline(Target(pipeline="tiny", workspace=str(ws)), RunOptions())

    assert summary.status == "published" and summary.failed_variants == ["h"], summary
    h = json.loads((ws / "artifacts" / "tiny" / "variants" / "h" / "metrics.json").read_text())
    assert h["status"] == "failed" and h["error"] == "timed out after 40 s", h
    assert published_files(ws) == ["dr.tflite", "i8.tflite"]
    [pool] = pools
    assert pool.size == 3 and len(pool.started) == 3, pool.started
    for pid in pool.started:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # the hung worker and the others are gone
