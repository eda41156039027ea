"""Throw-away quantflow projects for the benchmark: a pipelines.yaml with the seeds' MNIST
experiment (dataset path absolute, so nothing is copied), a git repo, DVC with a local remote
(as this repository is set up) and the generated dvc.yaml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# The venv that runs the benchmark (a git worktree has no .venv of its own).
VENV_BIN = ROOT / ".venv" / "bin" if (ROOT / ".venv").is_dir() else Path(sys.executable).parent
MNIST = (ROOT.parent / "shared" / "data" / "mnist").resolve()
PIPELINE = "mnist"

# Two more variants for the 8-variant point of the scaling curve (pipelines.yaml has six).
EXTRA_VARIANTS = [
    {"name": "int8_uint8", "kind": "int8", "io_type": "uint8"},
    {"name": "int16x8_fallback", "kind": "int16x8", "allow_float_fallback": True},
]


def repo_pipeline() -> dict:
    """The `mnist` pipeline of this repository's pipelines.yaml, as written there (read with
    quantflow's own loader), so the benchmark always runs the pipeline the project ships."""
    from quantflow.core.specload import load_spec

    spec = load_spec(ROOT / "pipelines.yaml").spec
    return spec.pipelines[PIPELINE].model_dump(mode="json", exclude_unset=True)


def variants() -> list[dict]:
    return repo_pipeline()["variants"] + EXTRA_VARIANTS


def pipeline_spec(n_variants: int, train_size: int, test_size: int, gate_drop: float | None,
                  evaluation: dict | None) -> dict:
    """pipelines.yaml `mnist` with the dataset path made absolute, the first ``n_variants``
    variants, and optionally other split sizes, gate threshold or evaluation settings."""
    pipe = repo_pipeline()
    pipe["dataset"].update(path=str(MNIST), train_size=train_size, test_size=test_size)
    pipe["variants"] = variants()[:n_variants]
    if gate_drop is not None:
        pipe.setdefault("gate", {})["max_accuracy_drop"] = gate_drop
    if evaluation:
        pipe.setdefault("evaluation", {}).update(evaluation)
    return {"execution": {"max_workers": 2, "artifacts": "artifacts"},
            "pipelines": {PIPELINE: pipe}}


def write_spec(ws: Path, spec: dict) -> Path:
    path = ws / "pipelines.yaml"
    path.write_text("# quantflow benchmark workspace (bench/run_bench.py)\n"
                    + yaml.safe_dump(spec, sort_keys=False, width=100))
    return path


def _sh(cmd: list[str], cwd: Path) -> None:
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed in {cwd}:\n{out.stdout}\n{out.stderr}")


def create(ws: Path, spec: dict, populate: Callable[[Path], None] | None = None) -> Path:
    """A fresh project at ``ws``: spec, the workload's own files (``populate``: a builder
    module, a dataset under data/), git, DVC (local remote), dvc.yaml; one commit."""
    shutil.rmtree(ws, ignore_errors=True)
    ws.mkdir(parents=True)
    write_spec(ws, spec)
    if populate:
        populate(ws)
    (ws / ".gitignore").write_text("/artifacts/\n/registry/\n/data/\n")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    _sh(["git", "init", "-q", "."], ws)
    _sh([str(VENV_BIN / "dvc"), "init", "-q"], ws)
    dvc = str(VENV_BIN / "dvc")
    _sh([dvc, "config", "core.analytics", "false"], ws)
    _sh([dvc, "config", "core.check_update", "false"], ws)
    _sh([dvc, "remote", "add", "-d", "storage", str(ws.parent / f"{ws.name}-remote")], ws)
    _sh([str(VENV_BIN / "quantflow"), "dvc"], ws)
    _sh(git + ["add", "."], ws)
    _sh(git + ["commit", "-q", "-m", "benchmark workspace"], ws)
    return ws


def reset(ws: Path) -> None:
    """Back to cold: no artifacts, no registry, no dvc.lock, empty DVC cache and remote."""
    for path in (ws / "artifacts", ws / "registry", ws / ".dvc" / "cache",
                 ws.parent / f"{ws.name}-remote"):
        shutil.rmtree(path, ignore_errors=True)
    (ws / "dvc.lock").unlink(missing_ok=True)


def bump_gate_drop(ws: Path, pipeline: str = PIPELINE,
                   step: float = 0.001) -> tuple[float, float]:
    """Loosen only gate.max_accuracy_drop in the workspace's pipelines.yaml, as a user edits it;
    return (old, new)."""
    path = ws / "pipelines.yaml"
    spec = yaml.safe_load(path.read_text())
    gate = spec["pipelines"][pipeline].setdefault("gate", {})
    old = gate.get("max_accuracy_drop") or 0.0
    gate["max_accuracy_drop"] = round(old + step, 6)
    write_spec(ws, spec)
    return old, gate["max_accuracy_drop"]
