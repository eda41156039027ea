"""`quantflow verify [REGISTRY]`: exit 0 on a clean registry, non-zero with one line per
tampered, missing or extra file, and a one-line error (no traceback) without a registry."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from quantflow.cli import app
from quantflow.core.errors import Exit
from quantflow.core.results import GateResult, VariantDecision
from quantflow.domain import registry as reg


def verify(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["verify", str(path)], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """Two pipelines, two versions of one of them, published the real way (fake .tflite bytes)."""
    root = tmp_path / "registry"
    for pipeline, versions in (("digits", 2), ("mnist", 1)):
        for n in range(versions):
            files = {}
            for name in ("i8", "f16"):
                files[name] = tmp_path / "artifacts" / pipeline / str(n) / f"{name}.tflite"
                files[name].parent.mkdir(parents=True, exist_ok=True)
                files[name].write_bytes(b"TFL3" + name.encode() * (50 + n))
            gate = GateResult(pipeline=pipeline, selected=["i8", "f16"], decisions=[
                VariantDecision(name=v, passed=True, reason="ok") for v in files])
            reg.publish(pipeline, gate, files, root / pipeline, "latest", {})
    return root


def versions(registry: Path, pipeline: str = "digits") -> list[Path]:
    return [registry / pipeline / v for v in reg.list_versions(registry / pipeline)]


def test_clean_registry_exits_0(registry):
    code, out = verify(registry)
    assert code == Exit.OK, out
    assert "every published file matches its manifest" in out


def test_tampered_file_is_reported_with_both_hashes(registry):
    target = versions(registry)[0] / "i8.tflite"
    blob = bytearray(target.read_bytes())
    blob[10] ^= 0x01  # one flipped bit
    os.chmod(target, 0o644)
    target.write_bytes(bytes(blob))
    code, out = verify(registry)
    assert code == Exit.ERROR
    [line] = [x for x in out.splitlines() if x.startswith("tampered:")]
    assert str(target) in line and "!= manifest" in line


def test_missing_extra_and_broken_alias_each_get_a_line(registry):
    old, new = versions(registry)
    (old / "f16.tflite").unlink()
    (new / "backdoor.tflite").write_bytes(b"TFL3 evil")
    (registry / "mnist" / "prod").symlink_to("no-such-version")
    code, out = verify(registry)
    assert code == Exit.ERROR
    lines = out.splitlines()
    assert f"missing: {old / 'f16.tflite'}: listed in the manifest but not on disk" in lines
    assert f"extra: {new / 'backdoor.tflite'}: not listed in the manifest" in lines
    assert any(x.startswith(f"broken_alias: {registry / 'mnist' / 'prod'}") for x in lines)


def test_manifest_edited_to_match_a_swapped_file_is_still_caught_by_version(registry):
    """Rewriting a manifest for another version (copying a version folder) is not a pass."""
    old, new = versions(registry)
    manifest = json.loads((old / reg.MANIFEST).read_text())
    manifest["version"] = "someone-else"
    (old / reg.MANIFEST).write_text(json.dumps(manifest))
    code, out = verify(registry)
    assert code == Exit.ERROR
    assert f"bad_manifest: {old / reg.MANIFEST}" in out


def test_unreadable_manifest(registry):
    (versions(registry, "mnist")[0] / reg.MANIFEST).write_text("{not json")
    code, out = verify(registry)
    assert code == Exit.ERROR and "bad_manifest:" in out


@pytest.mark.parametrize("make", ["missing", "file"])
def test_no_registry_is_a_one_line_error(tmp_path, make):
    path = tmp_path / "registry"
    if make == "file":
        path.write_text("not a folder")
    code, out = verify(path)
    assert code == Exit.ERROR
    assert out.strip().splitlines() == [f"{path}: cannot verify: no registry folder at {path}"]
    assert "Traceback" not in out
