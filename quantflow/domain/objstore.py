"""The registry on an object store: `publish.registry: s3://bucket/prefix` (any fsspec URL).

Workers on other machines publish into one place that has no rename and no lock, so
all-or-nothing comes from the order of writes, each object PUT being atomic on its own: a
version's files first, then its manifest (a version without one is unfinished and invisible),
then the alias object ``<pipeline>/<alias>`` (JSON naming the version) last. A reader trusts
only what the alias, or a complete manifest, points at; a crash leaves at worst an unfinished
prefix that nothing points at. Two publishers of one pipeline are kept apart by the
deployment's concurrency limit, not here (docs/SCALE.md). The manifest is built exactly as
for a folder (``registry._build``, in a local temp folder) and then uploaded.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from quantflow.core.errors import RegistryError
from quantflow.core.results import GateResult, PublishRecord
from quantflow.domain.store import MANIFEST, new_version, parse_manifest


def is_url(registry: str | Path) -> bool:
    return "://" in str(registry)


def open_fs(url: str) -> tuple[Any, str]:
    """(filesystem, root path) without fsspec's instance or listing caches: another worker
    may have written since. s3fs reads AWS_* from the environment (AWS_ENDPOINT_URL_S3 for
    MinIO or moto)."""
    from fsspec.core import url_to_fs

    return url_to_fs(url.rstrip("/"), skip_instance_cache=True, use_listings_cache=False)


def list_versions(fs: Any, pipeline_root: str) -> list[str]:
    """Complete versions (a manifest is written last but one), oldest first."""
    if not fs.isdir(pipeline_root):
        return []
    prefixes = [p for p in fs.ls(pipeline_root, detail=True) if p["type"] == "directory"]
    return sorted(Path(p["name"]).name for p in prefixes
                  if fs.exists(f"{p['name']}/{MANIFEST}"))


def read_manifest(fs: Any, pipeline_root: str, version: str) -> dict[str, Any]:
    return parse_manifest(fs.cat_file(f"{pipeline_root}/{version}/{MANIFEST}").decode(),
                          version)


def resolve_alias(fs: Any, pipeline_root: str, alias: str) -> str | None:
    """The version the alias object names; None without one; an error if it names no
    complete version (the alias is written last, so that means tampering)."""
    path = f"{pipeline_root}/{alias}"
    if not fs.isfile(path):
        return None
    try:
        version = json.loads(fs.cat_file(path))["version"]
    except (ValueError, KeyError, TypeError) as e:
        raise RegistryError(f"alias {path} is not an alias object ({e})") from None
    if not fs.exists(f"{pipeline_root}/{version}/{MANIFEST}"):
        raise RegistryError(f"alias {path} points at {version!r}, which is not a version")
    return version


def _same_as_alias(fs: Any, root: str, alias: str, gate: GateResult,
                   digests: dict[str, str]) -> str | None:
    """The alias's version if it holds exactly these bytes under the same decisions."""
    from quantflow.domain.registry import _decisions

    try:
        version = resolve_alias(fs, root, alias)
        listed = read_manifest(fs, root, version) if version else None
    except (RegistryError, OSError, ValueError):
        return None
    wanted = {f"{name}.tflite": digest for name, digest in digests.items()}
    if listed is None or {n: e.get("sha256") for n, e in listed["files"].items()} != wanted:
        return None
    for name, digest in wanted.items():
        if hashlib.sha256(fs.cat_file(f"{root}/{version}/{name}")).hexdigest() != digest:
            return None
    return version if _decisions(listed) == {d.name: d.passed for d in gate.decisions} else None


def publish(pipeline: str, gate: GateResult, files: dict[str, Path], url: str, alias: str,
            manifest_extra: dict[str, Any], evaluated: Mapping[str, str | None] | None = None,
            attach: Any = None) -> PublishRecord:
    """``registry.publish`` for an object store: same checks, same manifest, same outcomes
    (blocked, unchanged, published); files, then manifest, then alias."""
    from quantflow.domain.registry import _build, _hash_selection, blocked

    if not gate.selected:
        return blocked(pipeline, gate, alias)
    digests = _hash_selection(gate, files, evaluated)
    fs, base = open_fs(url)
    root = f"{base}/{pipeline}"
    same = _same_as_alias(fs, root, alias, gate, digests)
    names = sorted(f"{n}.tflite" for n in gate.selected)
    if same is not None:
        return PublishRecord(pipeline=pipeline, status="unchanged", version=same,
                             path=f"{url.rstrip('/')}/{pipeline}/{same}", alias=alias,
                             files=names, message=f"unchanged: already published as {same}")
    version = new_version(Path(tempfile.gettempdir()))  # time + random: no listing needed
    with tempfile.TemporaryDirectory(prefix="qf-publish-") as tmp:
        names = _build(Path(tmp), pipeline, version, gate, files, digests, manifest_extra,
                       attach)
        for local in sorted(Path(tmp).iterdir(), key=lambda p: p.name == MANIFEST):
            fs.put_file(str(local), f"{root}/{version}/{local.name}")  # the manifest last
    fs.pipe_file(f"{root}/{alias}", json.dumps({"version": version}).encode())
    return PublishRecord(pipeline=pipeline, status="published", version=version,
                         path=f"{url.rstrip('/')}/{pipeline}/{version}", files=names,
                         alias=alias, message=f"published {', '.join(names)}")
