"""Publishing and verifying the local registry with fake .tflite bytes (no TensorFlow)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from quantflow.core.io import sha256_file
from quantflow.core.results import GateResult, VariantDecision
from quantflow.domain import registry as reg
from quantflow.domain.verify import verify

EXTRA = {
    "spec_sha256": "ab" * 32,
    "dataset_sha256": "cd" * 32,
    "calibration_sha256": "ef" * 32,
    "metrics": {"i8": {"accuracy": 0.96}},
    "versions": {"tensorflow": "2.21.0"},
    "git_commit": "0123456789abcdef",
}


def make_gate(selected: list[str], passed: tuple[str, ...] = ("i8", "f16")) -> GateResult:
    decisions = [
        VariantDecision(name=n, passed=n in passed, reason="ok" if n in passed else "too big")
        for n in ("i8", "f16", "dr")
    ]
    return GateResult(pipeline="digits", decisions=decisions, selected=selected)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for i, name in enumerate(("i8", "f16", "dr")):
        path = tmp_path / "artifacts" / f"{name}.tflite"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"TFL3" + bytes([i]) * (100 + i))
        out[name] = path
    return out


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "registry" / "digits"


def publish(files: dict[str, Path], folder: Path, selected: list[str] | None = None) -> Any:
    gate = make_gate(["i8", "f16"] if selected is None else selected)
    return reg.publish("digits", gate, files, folder, "latest", EXTRA)


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != reg.LOCK)


def test_publish_writes_selected_files_and_manifest(files: dict[str, Path], folder: Path) -> None:
    record = publish(files, folder)
    assert record.status == "published" and record.files == ["f16.tflite", "i8.tflite"]
    vdir = folder / record.version
    assert record.path == str(vdir)
    assert sorted(p.name for p in vdir.iterdir()) == ["f16.tflite", "i8.tflite", "manifest.json"]
    manifest = json.loads((vdir / "manifest.json").read_text())
    for name in ("i8", "f16"):
        entry = manifest["files"][f"{name}.tflite"]
        assert entry["sha256"] == hashlib.sha256(files[name].read_bytes()).hexdigest()
        assert entry["variant"] == name and entry["size_bytes"] == files[name].stat().st_size
    assert {k: manifest[k] for k in EXTRA} == EXTRA
    assert manifest["version"] == record.version and manifest["pipeline"] == "digits"
    assert manifest["gate"]["selected"] == ["i8", "f16"]
    assert reg.resolve_alias(folder, "latest") == record.version
    assert os.readlink(folder / "latest") == record.version  # relative: the registry can move
    assert reg.list_versions(folder) == [record.version]
    assert vdir.stat().st_mode & 0o777 == 0o755  # not mkdtemp's private 0700
    assert verify(folder.parent) == []


def test_alias_moves_to_the_newest_version(files: dict[str, Path], folder: Path) -> None:
    first = publish(files, folder)
    second = publish(files, folder, ["i8"])
    assert reg.list_versions(folder) == [first.version, second.version]
    assert reg.resolve_alias(folder, "latest") == second.version
    assert visible(folder) == sorted([first.version, second.version, "latest"])


def test_blocked_gate_publishes_nothing_and_keeps_alias(
    files: dict[str, Path], folder: Path
) -> None:
    first = publish(files, folder)
    record = reg.publish("digits", make_gate([], passed=()), files, folder, "latest", EXTRA)
    assert record.status == "blocked" and record.version is None
    assert "i8: too big" in record.message and "dr: too big" in record.message
    assert reg.list_versions(folder) == [first.version]
    assert reg.resolve_alias(folder, "latest") == first.version


def test_blocked_gate_does_not_create_the_registry(files: dict[str, Path], folder: Path) -> None:
    record = reg.publish("digits", make_gate([], passed=()), files, folder, "latest", EXTRA)
    assert record.status == "blocked" and not folder.exists()


@pytest.mark.parametrize("fault", ["rename", "replace", "fsync"])
def test_crash_mid_publish_leaves_registry_unchanged(
    files: dict[str, Path], folder: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    first = publish(files, folder)
    before = visible(folder)

    def crash(*args: Any) -> None:
        raise OSError(f"simulated crash in os.{fault}")

    monkeypatch.setattr(os, fault, crash)
    with pytest.raises(OSError, match="simulated crash"):
        publish(files, folder, ["i8"])
    monkeypatch.undo()
    assert visible(folder) == before  # no new version, no leftover temp folder or link
    assert not [p for p in folder.iterdir() if p.name.startswith(".") and p.name != reg.LOCK]
    assert reg.resolve_alias(folder, "latest") == first.version
    assert verify(folder.parent) == []


def test_bad_calls_are_refused_before_touching_the_registry(
    files: dict[str, Path], folder: Path
) -> None:
    with pytest.raises(FileNotFoundError, match="dr"):
        reg.publish("digits", make_gate(["dr"]), {"i8": files["i8"]}, folder, "latest", EXTRA)
    with pytest.raises(ValueError, match="may not set files"):
        reg.publish("digits", make_gate(["i8"]), files, folder, "latest", {"files": 1})
    assert not folder.exists()
    record = publish(files, folder)
    with pytest.raises(reg.RegistryError, match="not an alias"):
        reg.publish("digits", make_gate(["i8"]), files, folder, record.version, EXTRA)


def test_concurrent_threads_publish_distinct_complete_versions(
    files: dict[str, Path], folder: Path
) -> None:
    barrier = threading.Barrier(6)
    records: list[Any] = []

    def worker(i: int) -> None:
        own = {**files, "i8": files["i8"].with_name(f"i8-{i}.tflite")}
        own["i8"].write_bytes(b"TFL3 thread %d" % i)  # other bytes: each is a new version
        barrier.wait()
        records.append(publish(own, folder))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    versions = {r.version for r in records}
    assert len(versions) == 6 and sorted(versions) == reg.list_versions(folder)
    assert reg.resolve_alias(folder, "latest") in versions
    assert verify(folder.parent) == []


PUBLISHER = """
import os, sys
from pathlib import Path
from quantflow.domain.registry import publish
from quantflow.core.results import GateResult, VariantDecision
gate = GateResult(pipeline="digits", selected=["i8"],
                  decisions=[VariantDecision(name="i8", passed=True, reason="ok")])
for i in range(3):
    own = Path(sys.argv[1]).with_name(f"i8-{os.getpid()}-{i}.tflite")
    own.write_bytes(b"TFL3 %d %d" % (os.getpid(), i))  # new bytes: a new version each time
    print(publish("digits", gate, {"i8": own}, Path(sys.argv[2]), "latest", {}).version)
"""


def test_concurrent_processes_publish_distinct_complete_versions(
    files: dict[str, Path], folder: Path
) -> None:
    args = [sys.executable, "-c", PUBLISHER, str(files["i8"]), str(folder)]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    versions = [v for out in outputs for v in out]
    assert len(versions) == 12 and sorted(set(versions)) == reg.list_versions(folder)
    assert verify(folder.parent) == []


def test_verify_detects_tampering_deletion_extras_and_broken_alias(
    files: dict[str, Path], folder: Path
) -> None:
    vdir = folder / publish(files, folder).version
    data = bytearray((vdir / "i8.tflite").read_bytes())
    data[10] ^= 0x01
    (vdir / "i8.tflite").write_bytes(bytes(data))
    (vdir / "f16.tflite").unlink()
    (vdir / "notes.txt").write_text("hi")
    (folder / "stable").symlink_to("20000101T000000.000000Z-000000")
    found = {(p.kind, Path(p.path).name) for p in verify(folder.parent)}
    assert found == {
        ("tampered", "i8.tflite"),
        ("missing", "f16.tflite"),
        ("extra", "notes.txt"),
        ("broken_alias", "stable"),
    }
    with pytest.raises(reg.RegistryError, match="not a published version"):
        reg.resolve_alias(folder, "stable")


def test_verify_and_listing_ignore_leftover_temp_folders(
    files: dict[str, Path], folder: Path
) -> None:
    record = publish(files, folder)
    leftover = folder / ".tmp-crashed"
    leftover.mkdir()
    (leftover / "i8.tflite").write_bytes(b"half")
    assert reg.list_versions(folder) == [record.version]
    assert verify(folder.parent) == []
    assert reg.resolve_alias(folder, "nope") is None


def test_verify_reports_an_unusable_manifest(files: dict[str, Path], folder: Path) -> None:
    vdir = folder / publish(files, folder).version
    (vdir / "manifest.json").write_text('{"version": "x", "files": {}}')
    [problem] = verify(folder.parent)
    assert problem.kind == "bad_manifest" and problem.version == vdir.name
    assert "manifest is for version 'x'" in str(problem)


def test_verify_refuses_a_missing_registry(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such folder"):
        verify(tmp_path / "typo")


def test_publish_removes_leftovers_of_a_killed_publisher(files: dict[str, Path],
                                                        folder: Path) -> None:
    """A publisher killed mid-way leaves a temp folder and maybe a temp alias link."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".tmp-dead").mkdir()
    (folder / ".tmp-dead" / "half.tflite").write_bytes(b"x")
    os.symlink("nowhere", folder / ".latest.dead")
    record = publish(files, folder)
    assert record.status == "published"
    assert not (folder / ".tmp-dead").exists()
    assert not os.path.lexists(folder / ".latest.dead")


# ------------------------------------------------------------- the same bytes are not re-published
def test_same_bytes_and_decisions_are_unchanged_not_a_new_version(
    files: dict[str, Path], folder: Path
) -> None:
    first = publish(files, folder)
    again = publish(files, folder)  # a threshold or schedule edit: same files, same decisions
    assert again.status == "unchanged" and again.version == first.version
    assert again.message == f"unchanged: already published as {first.version}"
    assert again.files == first.files and again.path == first.path
    assert reg.list_versions(folder) == [first.version]
    assert reg.resolve_alias(folder, "latest") == first.version


@pytest.mark.parametrize("change", ["bytes", "selection", "decision", "tampered", "alias"])
def test_a_changed_selection_or_decision_publishes(
    files: dict[str, Path], folder: Path, change: str
) -> None:
    first = publish(files, folder)
    gate, alias = make_gate(["i8", "f16"]), "latest"
    if change == "bytes":
        files["i8"].write_bytes(b"TFL3 retrained")
    elif change == "selection":
        gate = make_gate(["i8"])
    elif change == "decision":  # dr newly passes; with strategy `best` the selection may stay
        gate = make_gate(["i8", "f16"], passed=("i8", "f16", "dr"))
    elif change == "tampered":  # the alias's copy no longer holds those bytes
        (folder / first.version / "i8.tflite").write_bytes(b"TFL3 evil")
    else:
        alias = "stable"  # another alias has no version yet
    record = reg.publish("digits", gate, files, folder, alias, EXTRA)
    assert record.status == "published" and record.version != first.version
    assert reg.resolve_alias(folder, alias) == record.version
    assert reg.list_versions(folder) == [first.version, record.version]


def evaluated(files: dict[str, Path]) -> dict[str, str | None]:
    return {name: sha256_file(path) for name, path in files.items()}


def test_publish_refuses_a_file_that_is_not_the_one_evaluated(
    files: dict[str, Path], folder: Path
) -> None:
    first = reg.publish("digits", make_gate(["i8"]), files, folder, "latest", EXTRA,
                        evaluated=evaluated(files))
    assert first.status == "published"
    measured = evaluated(files)
    blob = bytearray(files["i8"].read_bytes())
    blob[7] ^= 0x01  # one flipped bit after the evaluation, e.g. from a corrupted DVC cache
    files["i8"].write_bytes(bytes(blob))
    before = {p.name: sorted(q.name for q in p.iterdir()) if p.is_dir() else None
              for p in folder.iterdir()}
    with pytest.raises(reg.IntegrityError,
                       match=r"^i8: the file changed since it was evaluated; re-run with --force"):
        reg.publish("digits", make_gate(["i8", "f16"]), files, folder, "latest", EXTRA,
                    evaluated=measured)
    after = {p.name: sorted(q.name for q in p.iterdir()) if p.is_dir() else None
             for p in folder.iterdir()}
    assert after == before and reg.resolve_alias(folder, "latest") == first.version


def test_publish_refuses_a_variant_whose_evaluation_recorded_no_hash(
    files: dict[str, Path], folder: Path
) -> None:
    with pytest.raises(reg.IntegrityError, match="f16: its evaluation recorded no sha256"):
        reg.publish("digits", make_gate(["i8", "f16"]), files, folder, "latest", EXTRA,
                    evaluated={"i8": sha256_file(files["i8"]), "f16": None})
    assert not folder.exists()


def test_a_file_swapped_during_the_copy_is_refused_and_nothing_is_left(
    files: dict[str, Path], folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A race cannot be timed for real: the copy itself swaps the file first."""
    first = publish(files, folder)
    files["f16"].write_bytes(b"TFL3 new f16")
    real_copy = reg.copy_hashed

    def swap_then_copy(src: Path, dst: Path) -> str:
        src.write_bytes(src.read_bytes() + b"!")
        return real_copy(src, dst)

    monkeypatch.setattr(reg, "copy_hashed", swap_then_copy)
    with pytest.raises(reg.IntegrityError, match="changed while it was being published"):
        publish(files, folder)
    assert visible(folder) == sorted([first.version, "latest"])
    assert not [p for p in folder.iterdir() if p.name.startswith(".tmp-")]
