"""The local model registry: what gets published, and when nothing new should be.

Layout: ``<registry>/<pipeline>/<version>/{<variant>.tflite, manifest.json}`` and a symlink
``<registry>/<pipeline>/<alias> -> <version>``; how a version gets there without a reader or a
crash ever seeing half of one is ``quantflow.domain.store`` (``quantflow.domain.objstore``
for an ``s3://`` registry), re-hashing published versions is ``quantflow.domain.verify``.
This module decides: only the bytes the gate's evaluation measured are published, and the
same bytes under the same decisions are not published twice.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from quantflow.core.errors import IntegrityError, RegistryError
from quantflow.core.io import fsync_dir, sha256_file
from quantflow.core.results import GateResult, PublishRecord
from quantflow.domain.store import (  # noqa: F401 - the registry's reading API, re-exported
    LOCK,
    MANIFEST,
    copy_hashed,
    list_versions,
    locked,
    new_version,
    read_manifest,
    remove_leftovers,
    resolve_alias,
    swap_in,
)

_RESERVED = {"pipeline", "version", "created", "files", "gate", "attachments"}
# (version, the model entries) -> {file name: bytes}: documents published beside the models
# (report.html), listed under "attachments" with their sha256 so `verify` checks them too.
Attach = Callable[[str, dict[str, Any]], dict[str, bytes]]


def _build(tmp: Path, pipeline: str, version: str, gate: GateResult, files: dict[str, Path],
           digests: dict[str, str], extra: dict[str, Any], attach: Attach | None = None) \
        -> list[str]:
    """Fill the temp folder with the selected files, the attachments and their manifest.

    The manifest records the hash of the bytes written, and those must be the bytes checked
    before the lock (``_hash_selection``): a file swapped in between is refused, not shipped.
    """
    entries = {}
    for name in gate.selected:
        dst = tmp / f"{name}.tflite"
        digest = copy_hashed(files[name], dst)
        if digest != digests[name]:
            raise IntegrityError(f"{name}: {files[name]} changed while it was being published")
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


def _hash_selection(gate: GateResult, files: dict[str, Path],
                    evaluated: Mapping[str, str | None] | None) -> dict[str, str]:
    """sha256 of each selected file; with ``evaluated``, refuse any file that is not the one
    its evaluation measured (a corrupted DVC cache, a hand edit): the gate passed those bytes,
    not these."""
    digests = {name: sha256_file(files[name]) for name in gate.selected}
    if evaluated is None:
        return digests
    wrong = []
    for name, digest in digests.items():
        if evaluated.get(name) is None:
            wrong.append(f"{name}: its evaluation recorded no sha256; re-run with --force")
        elif digest != evaluated[name]:
            wrong.append(f"{name}: the file changed since it was evaluated; re-run with --force "
                         f"(sha256 {digest[:12]}..., evaluated {evaluated[name][:12]}...)")
    if wrong:
        raise IntegrityError("\n".join(wrong))
    return digests


def _already_published(folder: Path, alias: str, gate: GateResult,
                       digests: dict[str, str]) -> str | None:
    """The alias's version if it holds exactly these bytes (on disk, not only in its manifest)
    under the same pass/fail decisions; re-publishing it would only move the alias."""
    try:
        version = resolve_alias(folder, alias)
        if version is None:
            return None
        listed = read_manifest(folder / version, version)
    except (RegistryError, OSError, ValueError):  # dangling alias, bad manifest: publish anew
        return None
    vdir = folder / version
    wanted = {f"{name}.tflite": digest for name, digest in digests.items()}
    if {n: e.get("sha256") for n, e in listed["files"].items()} != wanted:
        return None
    if any(not (vdir / n).is_file() or sha256_file(vdir / n) != d for n, d in wanted.items()):
        return None
    return version if _decisions(listed) == {d.name: d.passed for d in gate.decisions} else None


def _decisions(manifest: dict[str, Any]) -> dict[str, bool] | None:
    """Pass/fail per variant as a manifest recorded it; None if it cannot say."""
    try:
        return {d["name"]: d["passed"] for d in manifest["gate"]["decisions"]}
    except (KeyError, TypeError):
        return None


def blocked(pipeline: str, gate: GateResult, alias: str) -> PublishRecord:
    """Nothing selected: nothing published, the alias untouched, every reason said."""
    reasons = "; ".join(f"{d.name}: {d.reason}" for d in gate.decisions) or "no variants"
    return PublishRecord(pipeline=pipeline, status="blocked", alias=alias,
                         message=f"nothing passed the gate - {reasons}")


def publish(
    pipeline: str,
    gate: GateResult,
    files: dict[str, Path],
    registry: Path,
    alias: str,
    manifest_extra: dict[str, Any],
    evaluated: Mapping[str, str | None] | None = None,
    attach: Attach | None = None,
) -> PublishRecord:
    """Publish the gate's selection as a new immutable version and move the alias to it.

    Nothing selected means nothing published and the alias untouched (status "blocked"); the
    same bytes and decisions as the alias's version mean nothing new (status "unchanged"), so
    a schedule or threshold edit does not mint a version. ``evaluated`` (variant -> sha256 its
    evaluation measured) makes publish refuse other bytes before it touches the registry. Any
    error leaves the registry as it was: the temp folder is removed and a version that was
    renamed in before the alias move failed is renamed out again.
    """
    if not gate.selected:
        return blocked(pipeline, gate, alias)
    _check_inputs(gate, files, registry, alias, manifest_extra)
    digests = _hash_selection(gate, files, evaluated)
    registry.mkdir(parents=True, exist_ok=True)
    with locked(registry):
        remove_leftovers(registry)
        same = _already_published(registry, alias, gate, digests)
        if same is not None:
            return PublishRecord(pipeline=pipeline, status="unchanged", version=same,
                                 path=str(registry / same), alias=alias,
                                 files=sorted(f"{n}.tflite" for n in gate.selected),
                                 message=f"unchanged: already published as {same}")
        version = new_version(registry)
        names = swap_in(registry, alias, version,
                         lambda tmp: _build(tmp, pipeline, version, gate, files, digests,
                                            manifest_extra, attach))
    return PublishRecord(pipeline=pipeline, status="published", version=version,
                         path=str(registry / version), files=names, alias=alias,
                         message=f"published {', '.join(names)}")
