"""DVC for real: git + dvc in a temporary repository with the tiny pipeline (one variant, so
few TensorFlow processes). The default remote (~/.local/share/...) lands in tmp via HOME."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from quantflow.core.request import load_request
from quantflow.orchestration.plan import Plan
from quantflow.steps import STAGES
from quantflow.versioning.dvc import Stale, commit_run, md5_of, stale_stages
from tests.tiny import tiny_spec, write_workspace

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# What docs/DVC.md asks of a project's .gitignore: DVC outputs stay out of git, while the
# small uncached records (metrics, plot data, publish record) are committed.
GITIGNORE = """\
/artifacts/**
!/artifacts/*/
!/artifacts/*/metrics.json
!/artifacts/*/variants.csv
!/artifacts/*/latency.csv
!/artifacts/*/publish.json
/registry/
/.quantflow/
"""
ALL = ["tiny-prepare", "tiny-train", "tiny-export", "tiny-quantize-dr", "tiny-gate",
       "tiny-publish"]


def sh(cwd: Path, *args: str) -> str:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}:\n" \
                                 f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def ran(repro_output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", repro_output)


def status(cwd: Path, *args: str) -> dict:
    return json.loads(sh(cwd, "dvc", "status", "--json", *args))


def edit_spec(ws: Path, change) -> None:
    path = ws / "pipelines.yaml"
    data = yaml.safe_load(path.read_text())
    change(data["pipelines"]["tiny"])
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def commit_all(cwd: Path, message: str) -> None:
    sh(cwd, "git", "add", "-A")
    sh(cwd, "git", "commit", "-q", "-m", message)


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Path:
    """A git + DVC repo configured like this project, holding the tiny pipeline."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # in-process DVC and every subprocess
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "quantflow test")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "test@quantflow.invalid")
    root = tmp_path / "ws"
    write_workspace(root, tiny_spec(variants=[{"name": "dr", "kind": "dynamic_range"}]))
    sh(root, "git", "init", "-q")
    sh(root, "dvc", "init", "-q")
    shutil.copy(ROOT / ".dvc" / "config", root / ".dvc" / "config")
    shutil.copytree(ROOT / ".dvc" / "plots", root / ".dvc" / "plots")
    (root / ".gitignore").write_text(GITIGNORE)
    sh(root, "quantflow", "dvc")
    commit_all(root, "tiny pipeline")
    return root


def remote(ws: Path) -> Path:
    return Path(os.environ["HOME"]) / ".local" / "share" / "quantflow" / "dvc-remote"


def fake_outputs(ws: Path) -> None:
    """Placeholder bytes for every output: DVC's bookkeeping needs no real model."""
    for stage in yaml.safe_load((ws / "dvc.yaml").read_text())["stages"].values():
        for kind in ("outs", "metrics", "plots"):
            for out in stage.get(kind, []):
                path = ws / (next(iter(out)) if isinstance(out, dict) else out)
                target = path / "model.tflite" if not path.suffix else path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(f"placeholder {path.name}\n")


def record_all(request) -> None:
    """Record every step of the one-variant pipeline as `quantflow run` would after publish."""
    steps = Plan(request, set(STAGES), ["dr"]).describe()
    commit_run(request, steps, push_targets=steps)


# --------------------------------------------------------------- bookkeeping (no TensorFlow)
def test_dvc_decides_what_is_stale_and_commit_run_records_it(ws):
    ctx = load_request(ws, "pipelines.yaml", [], "tiny")
    assert stale_stages(ctx) == Stale(set(STAGES), ["dr"])  # never run

    fake_outputs(ws)
    record_all(ctx)
    assert status(ws) == {}
    assert stale_stages(ctx) == Stale(set(), [])
    assert status(ws, "--cloud") == {}, "commit_run pushes when publish ran"
    assert (remote(ws) / "files" / "md5").is_dir()

    def after(change) -> Stale | None:
        edit_spec(ws, change)
        return stale_stages(load_request(ws, "pipelines.yaml", [], "tiny"))

    assert after(lambda p: p["gate"].update(min_accuracy=0.6)) == Stale({"gate", "publish"})
    assert after(lambda p: p["variants"][0].update(kind="float16")) == \
        Stale({"quantize", "gate", "publish"}, ["dr"])
    assert after(lambda p: p["train"].update(epochs=3)) == \
        Stale(set(STAGES) - {"prepare"}, ["dr"])


def test_overrides_and_untracked_pipelines_are_left_to_run_everything(ws, tmp_path):
    fake_outputs(ws)
    ctx = load_request(ws, "pipelines.yaml", [], "tiny")
    record_all(ctx)
    lock = (ws / "dvc.lock").read_text()

    overridden = load_request(ws, "pipelines.yaml", ["pipelines.tiny.train.epochs=3"], "tiny")
    assert stale_stages(overridden) is None
    record_all(overridden)
    assert (ws / "dvc.lock").read_text() == lock, "an overridden run is not recorded"

    plain = tmp_path / "plain"
    write_workspace(plain, tiny_spec())
    assert stale_stages(load_request(plain, "pipelines.yaml", [], "tiny")) is None


def test_a_stale_dvc_yaml_is_regenerated_before_asking_dvc(ws):
    fake_outputs(ws)
    record_all(load_request(ws, "pipelines.yaml", [], "tiny"))
    edit_spec(ws, lambda p: p["variants"].append({"name": "i8", "kind": "int8"}))
    ctx = load_request(ws, "pipelines.yaml", [], "tiny")
    assert stale_stages(ctx) == Stale({"quantize", "gate", "publish"}, ["i8"])
    assert "tiny-quantize-i8" in yaml.safe_load((ws / "dvc.yaml").read_text())["stages"]
    assert sh(ws, "quantflow", "dvc", "--check")


def test_md5_of_is_what_dvc_records(ws):
    fake_outputs(ws)
    record_all(load_request(ws, "pipelines.yaml", [], "tiny"))
    lock = yaml.safe_load((ws / "dvc.lock").read_text())["stages"]
    calib = "artifacts/tiny/prepare/calibration.npz"
    [entry] = [o for o in lock["tiny-prepare"]["outs"] if o["path"] == calib]
    assert md5_of(ws, calib) == entry["md5"]
    # a file inside a directory output: DVC lists it in the directory's .dir object
    [vdir] = lock["tiny-quantize-dr"]["outs"]
    digest = vdir["md5"]
    listing = json.loads((ws / ".dvc" / "cache" / "files" / "md5" / digest[:2] /
                          digest[2:]).read_text())
    [model] = [e for e in listing if e["relpath"] == "model.tflite"]
    assert md5_of(ws, "artifacts/tiny/variants/dr/model.tflite") == model["md5"]
    assert md5_of(ws, "pipelines.yaml") is None  # git's, not DVC's
    assert md5_of(ws, "artifacts/tiny/nothing.bin") is None
    # read from DVC's records, not the file: bytes DVC did not record have no DVC md5
    (ws / "artifacts/tiny/variants/dr/model.tflite").write_text("a --set run, not recorded\n")
    (ws / calib).write_text("checked out from a corrupted cache object\n")
    assert md5_of(ws, "artifacts/tiny/variants/dr/model.tflite") is None
    assert md5_of(ws, calib) is None


# ------------------------------------------------------------------ real runs (TensorFlow)
@pytest.mark.slow
def test_repro_reruns_only_what_changed_and_a_clone_pulls_the_same_files(ws, tmp_path):
    assert ran(sh(ws, "dvc", "repro")) == ALL
    assert status(ws) == {}
    metrics = json.loads(sh(ws, "dvc", "metrics", "show", "--json"))
    dr = metrics[""]["data"]["artifacts/tiny/metrics.json"]["data"]["dr"]
    assert {"accuracy", "size_bytes", "latency_p50_ms", "passed"} <= set(dr)
    commit_all(ws, "run 1")

    edit_spec(ws, lambda p: p["gate"].update(max_accuracy_drop=0.2))
    assert set(status(ws)) == {"tiny-gate", "tiny-publish"}
    assert ran(sh(ws, "dvc", "repro")) == ["tiny-gate", "tiny-publish"]
    start = time.perf_counter()
    assert ran(sh(ws, "dvc", "repro")) == []
    print(f"no-op dvc repro: {time.perf_counter() - start:.2f}s")
    commit_all(ws, "run 2: looser gate")

    diff = json.loads(sh(ws, "dvc", "metrics", "diff", "HEAD~1", "HEAD", "--all", "--json"))
    assert "dr.accuracy" in diff["artifacts/tiny/metrics.json"]  # read from git at both commits
    sh(ws, "dvc", "plots", "show", "-o", str(tmp_path / "plots"))
    page = (tmp_path / "plots" / "index.html").read_text()
    assert "vegaEmbed" in page and '"size_bytes"' in page
    assert not re.search(r"<script[^>]+src=", page), "the page must not load scripts"
    assert '"latency_ms"' in page, "the latency plot (DVC's bar_horizontal template)"
    # across commits: both revisions' points, still offline (the machine has no internet)
    sh(ws, "dvc", "plots", "diff", "HEAD~1", "HEAD", "-o", str(tmp_path / "diff"))
    both = (tmp_path / "diff" / "index.html").read_text()
    assert "HEAD~1" in both and '"latency_ms"' in both and '"size_bytes"' in both
    assert not re.search(r"<script[^>]+src=", both)

    sh(ws, "dvc", "push")
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(ws), str(clone))
    sh(clone, "dvc", "pull")  # the committed default remote, no setup
    sh(clone, "quantflow", "dvc")  # this machine's toolchain file (not committed)
    published = ws / "registry" / "tiny" / "latest" / "dr.tflite"
    model = "artifacts/tiny/variants/dr/model.tflite"
    assert (clone / model).read_bytes() == published.read_bytes()
    calib = "artifacts/tiny/prepare/calibration.npz"
    assert (clone / calib).read_bytes() == (ws / calib).read_bytes()
    assert md5_of(clone, model) == hashlib.md5(published.read_bytes()).hexdigest()
    assert status(clone) == {}

    # an experiment on one variant's setting, addressed by its index in the variants list
    out = sh(ws, "dvc", "exp", "run", "-S", "pipelines.yaml:pipelines.tiny.variants.0.kind=float16")
    assert ran(out) == ["tiny-quantize-dr", "tiny-gate", "tiny-publish"]
    assert yaml.safe_load((ws / "pipelines.yaml").read_text())["pipelines"]["tiny"]["variants"] \
        == [{"name": "dr", "kind": "float16"}]
    assert status(ws) == {}


@pytest.mark.slow
def test_quantflow_run_leaves_dvc_clean_and_pushed(ws, prefect_harness):
    sh(ws, "quantflow", "run")
    assert status(ws) == {}
    assert status(ws, "--cloud") == {}, "publish ran, so the outputs are pushed"
    assert ran(sh(ws, "dvc", "repro")) == []
    assert "up to date" in sh(ws, "quantflow", "run")
