"""Re-hash published files against their manifests: `quantflow verify DIR`.

DIR may be the registry root, one pipeline's folder or one version folder (what a device or CI
receives, under any name). What DIR is comes from what it holds, and a folder with no manifest
to check is an error, never a pass: a mistyped or empty path must not look verified.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field

from quantflow.core.errors import RegistryError
from quantflow.core.io import sha256_file
from quantflow.core.results import Result
from quantflow.domain.store import LOCK, MANIFEST, entries, list_versions, read_manifest

Target = Literal["registry", "pipeline", "version"]


class VerifyProblem(Result):
    pipeline: str
    version: str | None = None
    path: str
    kind: Literal["tampered", "missing", "extra", "bad_manifest", "broken_alias"]
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.path}: {self.detail}"


class VerifyReport(Result):
    path: str
    target: Target = Field(description="What the folder was recognised as.")
    versions: int = Field(0, description="Version folders checked.")
    files: int = Field(0, description="Published files re-hashed.")
    problems: list[VerifyProblem] = Field(default_factory=list)


def _is_version(folder: Path) -> bool:
    return (folder / MANIFEST).exists()


def _is_pipeline(folder: Path) -> bool:
    """Publishing leaves its lock file in a pipeline folder, and versions hold manifests."""
    return (folder / LOCK).exists() or any(p.is_dir() and _is_version(p) for p in entries(folder))


def recognise(folder: Path) -> Target:
    """Registry root, pipeline folder or version folder; RegistryError if none of them."""
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder: {folder}")
    if _is_version(folder):
        return "version"
    if _is_pipeline(folder):
        return "pipeline"
    if any(p.is_dir() and not p.is_symlink() and _is_pipeline(p) for p in entries(folder)):
        return "registry"
    raise RegistryError(f"nothing to verify: no {MANIFEST} in {folder}, in a version folder "
                        "below it or in a pipeline folder below that")


def _check_version(report: VerifyReport, pipeline: str, vdir: Path, name: str | None) -> None:
    """Re-hash every listed file and flag files the manifest does not know. ``name`` is the
    version id the manifest must claim (None for a version folder outside a registry)."""
    report.versions += 1

    def problem(kind: str, path: Path, detail: str) -> None:
        report.problems.append(VerifyProblem(pipeline=pipeline, version=vdir.name, path=str(path),
                                             kind=kind, detail=detail))  # type: ignore[arg-type]

    try:
        manifest = read_manifest(vdir, name)
        listed = {**manifest["files"], **(manifest.get("attachments") or {})}
    except (OSError, ValueError) as e:
        return problem("bad_manifest", vdir / MANIFEST, f"unusable manifest: {e}")
    for fname, entry in sorted(listed.items()):
        path = vdir / fname
        report.files += 1
        if not path.is_file():
            problem("missing", path, "listed in the manifest but not on disk")
        elif (digest := sha256_file(path)) != entry.get("sha256"):
            problem("tampered", path, f"sha256 {digest} != manifest {entry.get('sha256')}")
    for path in sorted(p for p in vdir.iterdir() if p.name != MANIFEST and p.name not in listed):
        problem("extra", path, "not listed in the manifest")


def _check_pipeline(report: VerifyReport, pdir: Path) -> None:
    """Every version, then every other entry: a pipeline folder holds versions and aliases
    that name one of them, nothing else."""
    versions = list_versions(pdir)
    for version in versions:
        _check_version(report, pdir.name, pdir / version, version)
    for entry in entries(pdir):
        if entry.name in versions or (entry.is_symlink() and os.readlink(entry) in versions):
            continue
        if entry.is_symlink():
            kind, detail = "broken_alias", f"points at {os.readlink(entry)!r}, not a version"
        else:
            kind, detail = "extra", "neither a version nor an alias"
        report.problems.append(VerifyProblem(pipeline=pdir.name, path=str(entry),
                                             kind=kind, detail=detail))  # type: ignore[arg-type]


def verify_folder(folder: Path) -> VerifyReport:
    """Check whatever ``folder`` is (see ``recognise``); a registry with no version is an error.

    A version folder is held to its own name only inside a registry (beside the publish lock);
    a copy elsewhere may be called anything.
    """
    report = VerifyReport(path=str(folder), target=recognise(folder))
    if report.target == "version":
        real = folder.resolve()  # an alias link: check the version it names
        inside = (real.parent / LOCK).exists()
        _check_version(report, real.parent.name, real, real.name if inside else None)
    elif report.target == "pipeline":
        _check_pipeline(report, folder.resolve())
    else:
        for pdir in entries(folder):
            if pdir.is_dir() and not pdir.is_symlink():
                _check_pipeline(report, pdir)
    if report.versions == 0:
        raise RegistryError(f"nothing to verify: {folder} holds no published version")
    return report


def verify(folder: Path) -> list[VerifyProblem]:
    """The problems ``verify_folder`` finds; an empty list means every file matched."""
    return verify_folder(folder).problems
