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
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from quantflow.core.errors import RegistryError  # noqa: F401 - re-exported
from quantflow.core.io import fsync_dir, sha256_file
from quantflow.core.results import GateResult, PublishRecord, Result

MANIFEST = "manifest.json"
LOCK = ".publish.lock"
_RESERVED = {"pipeline", "version", "created", "files", "gate", "attachments"}
# (version, the model entries) -> {file name: bytes}: documents published beside the models
# (report.html), listed under "attachments" with their sha256 so `verify` checks them too.
Attach = Callable[[str, dict[str, Any]], dict[str, bytes]]




class VerifyProblem(Result):
    pipeline: str
    version: str | None = None
    path: str
    kind: Literal["tampered", "missing", "extra", "bad_manifest", "broken_alias"]
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.path}: {self.detail}"




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
    attach: Attach | None = None,
) -> list[str]:
    """Fill the temp folder with the selected files, the attachments and their manifest."""
    entries = {}
    for name in gate.selected:
        dst = tmp / f"{name}.tflite"
        digest = _copy(files[name], dst)
        entries[dst.name] = {"variant": name, "sha256": digest, "size_bytes": dst.stat().st_size}
    attached = _attach(tmp, attach(version, entries) if attach else {})
    manifest = {
        **extra,
        "pipeline": pipeline,
        "version": version,
        "created": datetime.now(UTC).isoformat(),
        "files": entries,
        "gate": gate.model_dump(mode="json"),
        **({"attachments": attached} if attached else {}),
    }
    with open(tmp / MANIFEST, "x") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o755)  # mkdtemp makes 0700; published versions are for every reader
    fsync_dir(tmp)
    return sorted(entries)


def _attach(tmp: Path, files: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    """Write each attachment (fsynced) and return its manifest entry."""
    out = {}
    for name, data in files.items():
        if Path(name).name != name or name == MANIFEST or (tmp / name).exists():
            raise ValueError(f"attachment name {name!r} must be a new plain file name")
        with open(tmp / name, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        out[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)}
    return out


def _point_alias(folder: Path, alias: str, version: str) -> None:
    """Temp symlink + os.replace: the alias always names some complete version."""
    tmp = folder / f".{alias}.{secrets.token_hex(4)}"
    os.symlink(version, tmp)
    try:
        os.replace(tmp, folder / alias)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(folder)


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
    attach: Attach | None = None,
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
        _remove_leftovers(registry)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=registry))
        final: Path | None = None
        try:
            version = _new_version(registry)
            names = _build(tmp, pipeline, version, gate, files, manifest_extra, attach)
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


def _remove_leftovers(registry: Path) -> None:
    """Temp folders of publishers killed mid-way. Safe under the lock: no one else builds."""
    for leftover in registry.glob(".*"):
        if leftover.is_symlink():  # a temp alias link (see _point_alias)
            leftover.unlink(missing_ok=True)
        elif leftover.is_dir() and leftover.name.startswith(".tmp-"):
            shutil.rmtree(leftover, ignore_errors=True)


def _entries(folder: Path) -> list[Path]:
    """Everything a reader should see: dot-prefixed temp folders and the lock are invisible."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def list_versions(registry_pipeline_dir: Path) -> list[str]:
    """Published versions, oldest first (ids sort by time); aliases are not versions."""
    if not registry_pipeline_dir.is_dir():
        return []
    return [p.name for p in _entries(registry_pipeline_dir) if p.is_dir() and not p.is_symlink()]


def resolve_alias(registry_pipeline_dir: Path, alias: str) -> str | None:
    """The version an alias names, None without such alias; a dangling alias is an error."""
    link = registry_pipeline_dir / alias
    if not link.is_symlink():
        return None
    target = os.readlink(link)
    if target not in list_versions(registry_pipeline_dir):
        raise RegistryError(f"alias {link} points at {target!r}, which is not a published version")
    return target


def _read_listing(vdir: Path) -> dict[str, Any]:
    """The manifest's file table; raises ValueError unless every entry is a plain file name."""
    manifest = json.loads((vdir / MANIFEST).read_text())
    listed = {**manifest["files"], **manifest.get("attachments", {})}
    if manifest.get("version") != vdir.name:
        raise ValueError(f"manifest is for version {manifest.get('version')!r}")
    if not all(isinstance(e, dict) and Path(n).name == n != MANIFEST for n, e in listed.items()):
        raise ValueError("file entries must be plain file names with a sha256")
    return listed


def _verify_version(pipeline: str, vdir: Path) -> list[VerifyProblem]:
    """Re-hash every listed file and flag files the manifest does not know."""

    def problem(kind: Any, path: Path, detail: str) -> VerifyProblem:
        return VerifyProblem(
            pipeline=pipeline, version=vdir.name, path=str(path), kind=kind, detail=detail
        )

    try:
        listed = _read_listing(vdir)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        return [problem("bad_manifest", vdir / MANIFEST, f"unusable manifest: {e}")]
    out = []
    for name, entry in sorted(listed.items()):
        path = vdir / name
        if not path.is_file():
            out.append(problem("missing", path, "listed in the manifest but not on disk"))
        elif (digest := sha256_file(path)) != entry.get("sha256"):
            detail = f"sha256 {digest} != manifest {entry.get('sha256')}"
            out.append(problem("tampered", path, detail))
    unknown = [p for p in vdir.iterdir() if p.name != MANIFEST and p.name not in listed]
    return out + [problem("extra", p, "not listed in the manifest") for p in sorted(unknown)]


def _verify_aliases(pdir: Path, versions: list[str]) -> list[VerifyProblem]:
    """Besides versions, a pipeline folder may only hold aliases that name one of them."""
    out = []
    for entry in _entries(pdir):
        if entry.name in versions or (entry.is_symlink() and os.readlink(entry) in versions):
            continue
        if entry.is_symlink():
            kind, detail = "broken_alias", f"points at {os.readlink(entry)!r}, not a version"
        else:
            kind, detail = "extra", "neither a version nor an alias"
        out.append(VerifyProblem(pipeline=pdir.name, path=str(entry), kind=kind, detail=detail))
    return out


def verify(registry_root: Path) -> list[VerifyProblem]:
    """Re-hash every version of every pipeline against its manifest and check every alias.

    A missing registry is an error rather than "no problems", so a mistyped path cannot pass.
    """
    if not registry_root.is_dir():
        raise FileNotFoundError(f"no registry folder at {registry_root}")
    problems: list[VerifyProblem] = []
    for pdir in _entries(registry_root):
        if not pdir.is_dir() or pdir.is_symlink():
            continue
        versions = list_versions(pdir)
        for version in versions:
            problems += _verify_version(pdir.name, pdir / version)
        problems += _verify_aliases(pdir, versions)
    return problems
