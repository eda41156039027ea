"""The reviewer's case for real: `dvc repro` in a git + DVC repository, one byte of the DVC
cache object of `variants/i8/model.tflite` flipped, `dvc checkout`, a gate-threshold edit.
Publish must refuse those bytes; identical bytes are not published twice; the manifest quotes
DVC's own md5s and publish.json no host path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from quantflow.core.io import sha256_file
from quantflow.domain.registry import list_versions, resolve_alias
from quantflow.domain.verify import verify
from tests.tiny import tiny_spec, write_workspace

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
GITIGNORE = "/artifacts/**\n!/artifacts/*/\n!/artifacts/*/metrics.json\n" \
            "!/artifacts/*/variants.csv\n!/artifacts/*/publish.json\n/registry/\n"
MODEL = "artifacts/tiny/variants/i8/model.tflite"


def run(cwd: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if ok:
        assert proc.returncode == 0, f"{args}: {proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def dvc_status(ws: Path) -> dict:
    return json.loads(run(ws, "dvc", "status", "--json").stdout)


def set_gate(ws: Path, drop: float) -> None:
    path = ws / "pipelines.yaml"
    data = yaml.safe_load(path.read_text())
    data["pipelines"]["tiny"]["gate"]["max_accuracy_drop"] = drop
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def dvc_records(ws: Path) -> tuple[str, str]:
    """What DVC itself tracks: the md5 of i8's model.tflite (from the .dir object of its
    folder) and of calibration.npz (from dvc.lock)."""
    lock = yaml.safe_load((ws / "dvc.lock").read_text())["stages"]
    [folder] = lock["tiny-quantize-i8"]["outs"]
    listing = json.loads(cache_object(ws, folder["md5"]).read_text())
    [model] = [e["md5"] for e in listing if e["relpath"] == "model.tflite"]
    [calib] = [o["md5"] for o in lock["tiny-prepare"]["outs"] if o["path"].endswith("ion.npz")]
    return model, calib


def cache_object(ws: Path, md5: str) -> Path:
    return ws / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "home").mkdir()
    root = tmp_path / "ws"
    write_workspace(root, tiny_spec(variants=[{"name": "i8", "kind": "int8", "io_type": "int8"}],
                                    gate={"max_accuracy_drop": 0.3}))
    run(root, "git", "init", "-q")
    run(root, "dvc", "init", "-q")
    shutil.copy(ROOT / ".dvc" / "config", root / ".dvc" / "config")
    (root / ".gitignore").write_text(GITIGNORE)
    run(root, "quantflow", "dvc")
    return root


def test_a_corrupted_cache_object_is_not_published_and_same_bytes_are_unchanged(ws: Path):
    run(ws, "dvc", "repro")
    reg = ws / "registry" / "tiny"
    [version] = list_versions(reg)
    manifest = json.loads((reg / version / "manifest.json").read_text())
    assert manifest["dvc_md5"] == dict(zip(("i8", "calibration"), dvc_records(ws), strict=True))
    assert manifest["metrics"]["i8"]["sha256"] == sha256_file(ws / MODEL)
    record = json.loads((ws / "artifacts" / "tiny" / "publish.json").read_text())
    assert record["path"] == f"registry/tiny/{version}" and str(ws) not in json.dumps(record)

    set_gate(ws, 0.25)  # same decision, same bytes: nothing new
    out = run(ws, "dvc", "repro").stdout + run(ws, "cat", "artifacts/tiny/publish.json").stdout
    assert f"unchanged: already published as {version}" in out
    assert list_versions(reg) == [version] and dvc_status(ws) == {}

    model_md5, _ = dvc_records(ws)
    obj = cache_object(ws, model_md5)
    before = obj.stat()
    os.chmod(obj, 0o644)  # DVC makes cache objects read-only
    blob = bytearray(obj.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    obj.write_bytes(bytes(blob))
    os.utime(obj, ns=(before.st_atime_ns, before.st_mtime_ns))  # bit rot keeps the mtime
    (ws / MODEL).unlink()
    run(ws, "dvc", "checkout")
    assert (ws / MODEL).read_bytes() == bytes(blob), "checkout wrote the corrupted object back"
    assert dvc_status(ws) == {}, "DVC trusts its state: the corruption is invisible to it"

    set_gate(ws, 0.2)
    failed = run(ws, "dvc", "repro", ok=False)
    assert failed.returncode != 0
    assert "i8: the file changed since it was evaluated; re-run with --force" in failed.stderr
    assert list_versions(reg) == [version] and resolve_alias(reg, "latest") == version
    assert verify(ws / "registry") == []
