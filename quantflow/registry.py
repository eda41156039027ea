"""The local model registry: immutable versions of published .tflite files plus an alias.

Layout: ``<registry>/<pipeline>/<version>/{<variant>.tflite, manifest.json}`` and a symlink
``<registry>/<pipeline>/<alias> -> <version>``. A version is built in a dot-prefixed temp folder
and renamed into place, and the alias is swapped with os.replace, so readers and a crash only
ever see complete versions. Dot-prefixed entries (temp folders, the lock) are never versions.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from quantflow.results import GateResult, PublishRecord, Result

MANIFEST = "manifest.json"
LOCK = ".publish.lock"
_RESERVED = {"pipeline", "version", "created", "files", "gate"}


class RegistryError(RuntimeError):
    """The registry is not in the state publishing or resolving needs."""


class VerifyProblem(Result):
    pipeline: str
    version: str | None = None
    path: str
    kind: Literal["tampered", "missing", "extra", "bad_manifest", "broken_alias"]
    detail: str


def sha256_file(path: Path) -> str:
    """Streaming sha256, for manifests and for verify (files may be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    """A rename is durable only once its directory entry is flushed."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy(src: Path, dst: Path) -> str:
    """Copy, fsync and hash the bytes actually written, so the manifest matches the copy."""
    h = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        for block in iter(lambda: fin.read(1 << 20), b""):
            h.update(block)
            fout.write(block)
        fout.flush()
        os.fsync(fout.fileno())
    return h.hexdigest()


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Exclusive flock: publishers of one pipeline take turns (threads and processes alike)."""
    with open(folder / LOCK, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _new_version(folder: Path) -> str:
    """Sortable UTC time plus a random suffix; checked under the lock, so ids never collide."""
    while True:
        now = datetime.now(UTC)
        version = f"{now:%Y%m%dT%H%M%S}.{now:%f}Z-{secrets.token_hex(3)}"
        if not os.path.lexists(folder / version):
            return version


def _build(
    tmp: Path,
    pipeline: str,
    version: str,
    gate: GateResult,
    files: dict[str, Path],
    extra: dict[str, Any],
) -> list[str]:
    """Fill the temp folder with the selected files and their manifest."""
    hashes = {
        f"{name}.tflite": _copy(files[name], tmp / f"{name}.tflite") for name in gate.selected
    }
    manifest = {
        **extra,
        "pipeline": pipeline,
        "version": version,
        "created": datetime.now(UTC).isoformat(),
        "files": {
            name: {"sha256": digest, "size_bytes": (tmp / name).stat().st_size}
            for name, digest in hashes.items()
        },
        "gate": gate.model_dump(mode="json"),
    }
    with open(tmp / MANIFEST, "x") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(tmp)
    return sorted(hashes)


def _point_alias(folder: Path, alias: str, version: str) -> None:
    """Temp symlink + os.replace: the alias always names some complete version."""
    tmp = folder / f".{alias}.{secrets.token_hex(4)}"
    os.symlink(version, tmp)
    try:
        os.replace(tmp, folder / alias)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(folder)


def _check_inputs(
    gate: GateResult, files: dict[str, Path], registry: Path, alias: str, extra: dict[str, Any]
) -> None:
    """Refuse before touching the registry, so a bad call cannot leave anything behind."""
    missing = [n for n in gate.selected if n not in files or not Path(files[n]).is_file()]
    if missing:
        raise FileNotFoundError(f"no .tflite file for selected variants: {', '.join(missing)}")
    clash = sorted(_RESERVED & set(extra))
    if clash:
        raise ValueError(f"manifest_extra may not set {', '.join(clash)}")
    target = registry / alias
    if alias.startswith(".") or (target.exists() and not target.is_symlink()):
        raise RegistryError(f"alias {alias!r} would overwrite {target}, which is not an alias")


def publish(
    pipeline: str,
    gate: GateResult,
    files: dict[str, Path],
    registry: Path,
    alias: str,
    manifest_extra: dict[str, Any],
) -> PublishRecord:
    """Publish the gate's selection as a new immutable version and move the alias to it.

    Nothing selected means nothing published and the alias untouched (status "blocked"). Any
    error leaves the registry as it was: the temp folder is removed and a version that was
    renamed in before the alias move failed is renamed out again.
    """
    if not gate.selected:
        reasons = "; ".join(f"{d.name}: {d.reason}" for d in gate.decisions) or "no variants"
        return PublishRecord(
            pipeline=pipeline,
            status="blocked",
            alias=alias,
            message=f"nothing passed the gate - {reasons}",
        )
    _check_inputs(gate, files, registry, alias, manifest_extra)
    registry.mkdir(parents=True, exist_ok=True)
    with _locked(registry):
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=registry))
        final: Path | None = None
        try:
            version = _new_version(registry)
            names = _build(tmp, pipeline, version, gate, files, manifest_extra)
            os.rename(tmp, registry / version)
            final = registry / version
            _point_alias(registry, alias, version)
        except BaseException:
            if final is not None:
                with contextlib.suppress(OSError):  # keep the original error if this fails too
                    os.rename(final, tmp)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return PublishRecord(
        pipeline=pipeline,
        status="published",
        version=version,
        path=str(final),
        files=names,
        alias=alias,
        message=f"published {', '.join(names)}",
    )


def list_versions(registry_pipeline_dir: Path) -> list[str]:
    """Published versions, oldest first; temp folders, the lock and aliases are not versions."""
    if not registry_pipeline_dir.is_dir():
        return []
    return sorted(
        p.name
        for p in registry_pipeline_dir.iterdir()
        if not p.name.startswith(".") and p.is_dir() and not p.is_symlink()
    )


def resolve_alias(registry_pipeline_dir: Path, alias: str) -> str | None:
    """The version an alias names, None without such alias; a dangling alias is an error."""
    link = registry_pipeline_dir / alias
    if not link.is_symlink():
        return None
    target = os.readlink(link)
    if target not in list_versions(registry_pipeline_dir):
        raise RegistryError(f"alias {link} points at {target!r}, which is not a published version")
    return target


def _verify_version(pipeline: str, vdir: Path) -> list[VerifyProblem]:
    """Re-hash every listed file and flag files the manifest does not know."""

    def problem(kind: Any, path: Path, detail: str) -> VerifyProblem:
        return VerifyProblem(
            pipeline=pipeline, version=vdir.name, path=str(path), kind=kind, detail=detail
        )

    try:
        listed = json.loads((vdir / MANIFEST).read_text())["files"]
        if not all(
            isinstance(e, dict) and Path(n).name == n != MANIFEST for n, e in listed.items()
        ):
            raise ValueError("file entries must be plain file names with a sha256")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        return [problem("bad_manifest", vdir / MANIFEST, f"unreadable manifest: {e!r}")]
    out = []
    for name, entry in sorted(listed.items()):
        path = vdir / name
        if not path.is_file():
            out.append(problem("missing", path, "listed in the manifest but not on disk"))
        elif (digest := sha256_file(path)) != entry.get("sha256"):
            out.append(
                problem("tampered", path, f"sha256 {digest} != manifest {entry.get('sha256')}")
            )
    extra = sorted(p.name for p in vdir.iterdir()) if vdir.is_dir() else []
    out += [
        problem("extra", vdir / n, "not listed in the manifest")
        for n in extra
        if n != MANIFEST and n not in listed
    ]
    return out


def verify(registry_root: Path) -> list[VerifyProblem]:
    """Check every version of every pipeline against its manifest, and every alias target."""
    problems: list[VerifyProblem] = []
    pipelines = (
        [
            p
            for p in sorted(registry_root.iterdir())
            if not p.name.startswith(".") and p.is_dir() and not p.is_symlink()
        ]
        if registry_root.is_dir()
        else []
    )
    for pdir in pipelines:
        versions = list_versions(pdir)
        for version in versions:
            problems += _verify_version(pdir.name, pdir / version)
        for entry in sorted(pdir.iterdir()):
            if entry.name.startswith(".") or entry.name in versions:
                continue
            if entry.is_symlink() and os.readlink(entry) in versions:
                continue
            kind = "broken_alias" if entry.is_symlink() else "extra"
            detail = (
                f"points at {os.readlink(entry)!r}, not a published version"
                if entry.is_symlink()
                else "neither a version nor an alias"
            )
            problems.append(
                VerifyProblem(pipeline=pdir.name, path=str(entry), kind=kind, detail=detail)
            )
    return problems
