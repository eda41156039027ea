"""Adding a variant kind is adding one file: a copy of the package with one more module in
quantflow/variants (dynamic_range.py under another name, nothing else touched) validates a spec
using the new kind, lists it in the JSON Schema, and runs it end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from quantflow.domain.registry import list_versions
from tests.tiny import tiny_spec, write_workspace

ROOT = Path(__file__).resolve().parents[2]
NEW = "dr_clone"


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package as it is, plus variants/dr_clone.py: dynamic_range.py with the kind literal
    and the class name changed. No other file is edited."""
    root = tmp_path_factory.mktemp("copy")
    for name in ("quantflow", "flows", "tasks"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    source = (ROOT / "quantflow" / "variants" / "dynamic_range.py").read_text()
    clone = source.replace('"dynamic_range"', f'"{NEW}"').replace("DynamicRange", "DrClone")
    assert clone.count(NEW) == 1 and clone != source
    (root / "quantflow" / "variants" / f"{NEW}.py").write_text(clone)
    return root


def quantflow(package: Path, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`python -m quantflow.cli ...` importing the copy (and only the copy)."""
    environ = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    environ.update(PYTHONPATH=str(package), **env)
    return subprocess.run([sys.executable, "-m", "quantflow.cli", *args], cwd=cwd,
                          env=environ, capture_output=True, text=True, timeout=900)


def workspace(root: Path, **pipeline: object) -> Path:
    spec = tiny_spec(variants=[{"name": "clone", "kind": NEW}], **pipeline)
    return write_workspace(root, spec)


def test_the_copy_imports_its_own_package(package: Path, tmp_path: Path) -> None:
    code = "import quantflow, quantflow.variants as v; print(quantflow.__file__, list(v.kinds()))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONPATH": str(package)})
    assert out.stdout.startswith(str(package / "quantflow")) and f"'{NEW}'" in out.stdout


def test_validate_accepts_the_new_kind(package: Path, tmp_path: Path) -> None:
    spec = workspace(tmp_path / "ws")
    proc = quantflow(package, tmp_path, "validate", str(spec))
    assert proc.returncode == 0, proc.stderr
    assert "valid - tiny (1 variants)" in proc.stdout
    bad = yaml.safe_load(spec.read_text())
    bad["pipelines"]["tiny"]["variants"][0]["io_type"] = "int8"  # the copy forbids extra keys
    spec.write_text(yaml.safe_dump(bad))
    proc = quantflow(package, tmp_path, "validate", str(spec))
    assert proc.returncode == 2 and "unknown key 'io_type'" in proc.stderr


def test_schema_lists_the_new_kind(package: Path, tmp_path: Path) -> None:
    proc = quantflow(package, tmp_path, "schema", "-o", "x.json")
    assert proc.returncode == 0, proc.stderr
    schema = json.loads((tmp_path / "x.json").read_text())
    variants = schema["definitions"]["PipelineSpec"]["properties"]["variants"]["items"]
    assert variants["discriminator"]["mapping"][NEW] == "#/definitions/DrCloneVariant"
    assert schema["definitions"]["DrCloneVariant"]["properties"]["kind"]["const"] == NEW


@pytest.mark.integration
def test_run_publishes_a_model_of_the_new_kind(package: Path, tmp_path: Path) -> None:
    """A real `quantflow run`: its own ephemeral Prefect server, spawned task workers (which
    import the copy too), real training, conversion, evaluation and publishing."""
    ws = tmp_path / "ws"
    spec = workspace(ws, train={"epochs": 3, "batch_size": 32, "learning_rate": 0.01, "seed": 0})
    proc = quantflow(package, ws, "run", "--spec", str(spec), "--force",
                     PREFECT_HOME=str(tmp_path / "prefect"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [version] = list_versions(ws / "registry" / "tiny")
    manifest = json.loads((ws / "registry" / "tiny" / version / "manifest.json").read_text())
    assert [f["variant"] for f in manifest["files"].values()] == ["clone"]
    assert manifest["metrics"]["clone"]["kind"] == NEW
    assert manifest["metrics"]["clone"]["tensors"]["weight_dtypes"].get("int8")
