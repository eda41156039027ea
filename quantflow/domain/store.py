"""The registry on disk: the layout of a pipeline folder, reading it, and writing it safely.

Publishers of a pipeline take turns under an flock; each builds its version in a dot-prefixed
temp folder, fsyncs it, renames it into place and then swaps the alias symlink with os.replace,
so a reader or a crash only ever sees complete versions. Dot-prefixed entries (temp folders,
temp alias links, the lock) are invisible to readers (``entries``).
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
from typing import Any

from quantflow.core.errors import RegistryError
from quantflow.core.io import fsync_dir

MANIFEST = "manifest.json"
LOCK = ".publish.lock"


def copy_hashed(src: Path, dst: Path) -> str:
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
def locked(folder: Path) -> Iterator[None]:
    """Exclusive flock: publishers of one pipeline take turns (threads and processes alike)."""
    with open(folder / LOCK, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def new_version(folder: Path) -> str:
    """Sortable UTC time plus a random suffix; checked under the lock, so ids never collide."""
    while True:
        now = datetime.now(UTC)
        version = f"{now:%Y%m%dT%H%M%S}.{now:%f}Z-{secrets.token_hex(3)}"
        if not os.path.lexists(folder / version):
            return version


def point_alias(folder: Path, alias: str, version: str) -> None:
    """Temp symlink + os.replace: the alias always names some complete version."""
    tmp = folder / f".{alias}.{secrets.token_hex(4)}"
    os.symlink(version, tmp)
    try:
        os.replace(tmp, folder / alias)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(folder)


def swap_in(registry: Path, alias: str, version: str, fill: Callable[[Path], list[str]]
            ) -> list[str]:
    """Build in a temp folder, rename it to ``version``, point the alias at it; on any error
    undo the rename and remove the temp folder, so the registry is as it was."""
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=registry))
    final: Path | None = None
    try:
        names = fill(tmp)
        os.rename(tmp, registry / version)
        final = registry / version
        point_alias(registry, alias, version)
    except BaseException:
        if final is not None:
            with contextlib.suppress(OSError):  # keep the original error if this fails too
                os.rename(final, tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return names


def remove_leftovers(registry: Path) -> None:
    """Temp folders of publishers killed mid-way. Safe under the lock: no one else builds."""
    for leftover in registry.glob(".*"):
        if leftover.is_symlink():  # a temp alias link (see point_alias)
            leftover.unlink(missing_ok=True)
        elif leftover.is_dir() and leftover.name.startswith(".tmp-"):
            shutil.rmtree(leftover, ignore_errors=True)


def entries(folder: Path) -> list[Path]:
    """Everything a reader should see: dot-prefixed temp folders and the lock are invisible."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def list_versions(registry_pipeline_dir: Path) -> list[str]:
    """Published versions, oldest first (ids sort by time); aliases are not versions."""
    if not registry_pipeline_dir.is_dir():
        return []
    return [p.name for p in entries(registry_pipeline_dir) if p.is_dir() and not p.is_symlink()]


def resolve_alias(registry_pipeline_dir: Path, alias: str) -> str | None:
    """The version an alias names, None without such alias; a dangling alias is an error."""
    link = registry_pipeline_dir / alias
    if not link.is_symlink():
        return None
    target = os.readlink(link)
    if target not in list_versions(registry_pipeline_dir):
        raise RegistryError(f"alias {link} points at {target!r}, which is not a published version")
    return target


def read_manifest(vdir: Path, version: str | None = None) -> dict[str, Any]:
    """A version's manifest, checked enough to trust its file table; ValueError otherwise.

    ``version`` is the id the folder must carry (None skips that check: a copied version
    folder may have any name). Entries must be plain file names, so a manifest cannot point
    a reader outside its folder.
    """
    try:
        text = (vdir / MANIFEST).read_text()
    except UnicodeDecodeError as e:
        raise ValueError(f"not a manifest ({type(e).__name__}: {e})") from None
    return parse_manifest(text, version)


def parse_manifest(text: str, version: str | None = None) -> dict[str, Any]:
    """``read_manifest``'s checks on a manifest's text, wherever it was read from (a folder,
    an object store: quantflow.domain.objstore)."""
    try:
        manifest = json.loads(text)
        # the models and the documents published beside them (report.html), all hashed
        listed = {**manifest["files"], **(manifest.get("attachments") or {})}
        named = manifest.get("version")
        plain = all(isinstance(e, dict) and Path(n).name == n != MANIFEST
                    for n, e in listed.items())
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise ValueError(f"not a manifest ({type(e).__name__}: {e})") from None
    if version is not None and named != version:
        raise ValueError(f"manifest is for version {named!r}")
    if not plain:
        raise ValueError("file entries must be plain file names with a sha256")
    return manifest
