"""What DVC recorded about a workspace: the stages dvc.yaml declares and the md5 that
dvc.lock, `.dvc` files and the cache's `.dir` objects hold for a file.

Read rather than recomputed, so a manifest quotes DVC's own hashes. Nothing here imports DVC
except to ask where its cache is.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from quantflow.core.io import md5_file


def declared(workspace: Path) -> dict[str, Any]:
    """Stages of dvc.yaml, or {} when the workspace is no DVC repo or has no dvc.yaml."""
    path = workspace / "dvc.yaml"
    if not (workspace / ".dvc").is_dir() or not path.is_file():
        return {}
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("stages") or {}


def md5_of(workspace: str | Path, path: str | Path) -> str | None:
    """The md5 DVC recorded for a file, read from DVC's own records: dvc.lock (or a `.dvc`
    file), and for a file inside a directory output that directory's `.dir` object in the
    DVC cache. What `dvc get`/`dvc pull` fetch is the object of that md5.

    None unless that record describes the file as it is now: not tracked, not recorded yet
    (a `--set` run, which DVC does not record), or checked out from a corrupted cache object
    (DVC then still reports the object's name). The file is hashed only for that comparison.
    """
    ws = Path(workspace).resolve()
    file = (ws / path).resolve()
    if not (ws / ".dvc").is_dir() or not file.is_file() or ws not in file.parents:
        return None
    rel = file.relative_to(ws)
    for out, md5 in _records(ws, rel):
        if out == rel and not md5.endswith(".dir"):
            recorded = md5
        elif md5.endswith(".dir") and out in rel.parents:
            recorded = _dir_entry(ws, md5, rel.relative_to(out).as_posix())
        else:
            continue
        return recorded if recorded == md5_file(file) else None
    return None


def _records(ws: Path, rel: Path) -> Iterator[tuple[Path, str]]:
    """(output path, md5) pairs DVC recorded that may hold ``rel``: dvc.lock entries of the
    stages dvc.yaml declares, then `.dvc` files of ``rel`` or a folder above it."""
    stages_of_yaml, lock = declared(ws), ws / "dvc.lock"
    if stages_of_yaml and lock.is_file():
        stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages") or {}
        for name in stages_of_yaml.keys() & stages.keys():
            for out in stages[name].get("outs") or []:
                if "md5" in out:
                    yield Path(out["path"]), out["md5"]
    for parent in (rel, *rel.parents[:-1]):
        dvcfile = ws / parent.with_name(parent.name + ".dvc")
        if dvcfile.is_file():
            for out in (yaml.safe_load(dvcfile.read_text(encoding="utf-8")) or {}).get("outs", []):
                if "md5" in out:
                    yield parent.parent / out["path"], out["md5"]


def _dir_entry(ws: Path, oid: str, relpath: str) -> str | None:
    """The md5 a directory's `.dir` object (a JSON list of {md5, relpath}) lists for a file."""
    try:
        listing = json.loads(_cache_object(ws, oid).read_text(encoding="utf-8"))
        return next((e["md5"] for e in listing if e.get("relpath") == relpath), None)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):  # not pulled, damaged
        return None


@functools.lru_cache(maxsize=8)
def _cache_root(ws: Path) -> Path:
    """Where DVC keeps objects for this workspace (its config may move the cache)."""
    from dvc.repo import Repo

    with Repo(str(ws)) as repo:
        return Path(repo.cache.local.path)


def _cache_object(ws: Path, oid: str) -> Path:
    """DVC 3 layout: <cache>/files/md5/<first two hex digits>/<the rest>."""
    return _cache_root(ws) / oid[:2] / oid[2:]
