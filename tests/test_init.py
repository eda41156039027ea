"""`quantflow init`: a bare folder becomes a git + DVC project whose spec validates and whose
dvc.yaml DVC accepts; an existing spec is never overwritten. Real git and DVC in tmp_path."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from quantflow.cli import app
from quantflow.core.errors import Exit
from quantflow.core.specload import load_spec

DVC = str(Path(sys.executable).parent / "dvc")


def quantflow(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


def ignored(cwd: Path, path: str) -> bool:
    return git(cwd, "check-ignore", "-q", "--no-index", path).returncode == 0


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No global git or DVC config of this machine leaks in."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


@pytest.mark.integration
def test_init_in_an_empty_folder_gives_a_project_dvc_and_validate_accept(tmp_path, home):
    project = tmp_path / "project"
    project.mkdir()
    code, out = quantflow("init", str(project))
    assert code == Exit.OK, out
    assert (project / ".git").is_dir() and (project / ".dvc" / "config").is_file()
    spec = project / "pipelines.yaml"
    assert spec.read_text().startswith("# yaml-language-server: $schema=./pipelines.schema.json")
    assert (project / "pipelines.schema.json").is_file()
    code, out = quantflow("validate", str(spec))
    assert code == Exit.OK and "valid - digits (3 variants)" in out, out
    pipe = load_spec(spec).spec.pipelines["digits"]
    assert pipe.dataset.source == "sklearn_digits" and pipe.model.arch == "seed_cnn"
    assert (project / "dvc.yaml").is_file()
    status = subprocess.run([DVC, "status"], cwd=project, capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    assert "digits-publish" in status.stdout  # every stage known to DVC, none run yet
    assert quantflow("dvc", "--spec", str(spec))[1].strip() == "dvc.yaml up to date"
    # what DVC caches stays out of git; its `cache: false` records and its own files do not
    for path in ("artifacts/digits/train/model.keras", "registry/digits/latest", ".venv/x"):
        assert ignored(project, path), path
    for path in ("artifacts/digits/metrics.json", "artifacts/digits/publish.json",
                 "artifacts/digits/variants.csv", ".dvc/config", "dvc.yaml", "dvc.lock",
                 "pipelines.yaml"):
        assert not ignored(project, path), path


def test_init_refuses_to_overwrite_a_spec(tmp_path, home):
    project = tmp_path / "project"
    project.mkdir()
    (project / "pipelines.yaml").write_text("mine: true\n")
    code, out = quantflow("init", str(project))
    assert code == Exit.SPEC
    [line] = out.strip().splitlines()
    assert "pipelines.yaml already exists" in line
    assert (project / "pipelines.yaml").read_text() == "mine: true\n"
    assert sorted(p.name for p in project.iterdir()) == ["pipelines.yaml"]  # no git, no DVC


def idx_folder(folder: Path) -> Path:
    folder.mkdir()
    images = np.zeros((20, 4, 4), np.uint8)
    (folder / "my-images.idx3-ubyte.gz").write_bytes(
        gzip.compress(struct.pack(">4I", 2051, 20, 4, 4) + images.tobytes()))
    (folder / "my-labels.idx1-ubyte.gz").write_bytes(
        gzip.compress(struct.pack(">2I", 2049, 20) + bytes(range(2)) * 10))
    return folder


def test_init_fills_the_spec_from_the_model_and_data_given(tmp_path, home, monkeypatch):
    """`model.path` and `dataset` as the user gave them, relative to the project."""
    project = tmp_path / "project"
    project.mkdir()
    np.savez(project / "faces.npz", x=np.zeros((10, 4, 4), np.float32), y=np.arange(10) % 2)
    (project / "net.keras").write_bytes(b"PK not loaded by init or validate")
    monkeypatch.chdir(project)
    code, out = quantflow("init", "--model", "net.keras", "--data", "faces.npz")
    assert code == Exit.OK, out
    assert "pipeline 'faces'" in out
    pipe = load_spec(project / "pipelines.yaml").spec.pipelines["faces"]
    assert (pipe.dataset.source, pipe.dataset.path, pipe.model.path) == \
        ("npz", "faces.npz", "net.keras")
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    assert "faces.npz" in stages["faces-prepare"]["deps"]
    assert "net.keras" in stages["faces-train"]["deps"]

    other = tmp_path / "other"
    other.mkdir()
    idx = idx_folder(tmp_path / "mnist-like")
    assert quantflow("init", str(other), "--data", str(idx))[0] == Exit.OK
    ds = load_spec(other / "pipelines.yaml").spec.pipelines["mnist-like"].dataset
    assert (ds.source, ds.path, ds.images, ds.labels) == \
        ("idx", idx.as_posix(), "my-images.idx3-ubyte.gz", "my-labels.idx1-ubyte.gz")


@pytest.mark.parametrize("model", ["model.tflite", "missing.keras", "folder"])
def test_a_model_init_cannot_use_is_one_line_and_nothing_is_written(tmp_path, home, model):
    project = tmp_path / "project"
    (project / "folder").mkdir(parents=True)
    (project / "model.tflite").write_bytes(b"TFL3")
    code, out = quantflow("init", str(project), "--model", str(project / model))
    assert code == Exit.SPEC
    [line] = out.strip().splitlines()
    assert "--model" in line and "SavedModel" in line
    assert sorted(p.name for p in project.iterdir()) == ["folder", "model.tflite"]


def test_init_inside_a_git_repository_keeps_it_and_the_users_gitignore(tmp_path, home):
    repo = tmp_path / "repo"
    project = repo / "models" / "digits"
    project.mkdir(parents=True)
    assert git(repo, "init", "-q").returncode == 0
    (project / ".gitignore").write_text("/notes.txt")
    code, out = quantflow("init", str(project))
    assert code == Exit.OK, out
    assert "already a repository" in out and "(--subdir)" in out
    assert not (project / ".git").exists() and (project / ".dvc").is_dir()
    lines = (project / ".gitignore").read_text().splitlines()
    assert lines[0] == "/notes.txt" and "/artifacts/**" in lines
    assert quantflow("init", str(project))[0] == Exit.SPEC
    assert os.listdir(project / ".dvc")
