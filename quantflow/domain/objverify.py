"""`quantflow verify s3://bucket/prefix[/pipeline[/version]]`: re-hash an object-store registry.

The same checks and report as a folder (quantflow.domain.verify): every listed object is
re-hashed, objects a manifest does not list are extras, and an alias object must name a
complete version. A prefix without a manifest is an unfinished publish (files are written
before the manifest), which nothing points at; it is skipped, as a folder's temp dirs are.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import PurePosixPath
from typing import Any

from quantflow.core.errors import RegistryError
from quantflow.domain.objstore import list_versions, open_fs, read_manifest
from quantflow.domain.store import MANIFEST
from quantflow.domain.verify import Target, VerifyProblem, VerifyReport


def _name(path: str) -> str:
    return PurePosixPath(path).name


def _check_version(fs: Any, report: VerifyReport, pdir: str, version: str) -> None:
    report.versions += 1
    pipeline, vdir = _name(pdir), f"{pdir}/{version}"

    def problem(kind: str, path: str, detail: str) -> None:
        report.problems.append(VerifyProblem(pipeline=pipeline, version=version, path=path,
                                             kind=kind, detail=detail))  # type: ignore[arg-type]

    try:
        manifest = read_manifest(fs, pdir, version)
        listed = {**manifest["files"], **(manifest.get("attachments") or {})}
    except (OSError, ValueError) as e:
        return problem("bad_manifest", f"{vdir}/{MANIFEST}", f"unusable manifest: {e}")
    present = {_name(p) for p in fs.ls(vdir, detail=False)}
    for fname, entry in sorted(listed.items()):
        report.files += 1
        if fname not in present:
            problem("missing", f"{vdir}/{fname}", "listed in the manifest but not stored")
        elif (digest := hashlib.sha256(fs.cat_file(f"{vdir}/{fname}")).hexdigest()) \
                != entry.get("sha256"):
            problem("tampered", f"{vdir}/{fname}", f"sha256 {digest} != manifest "
                                                   f"{entry.get('sha256')}")
    for fname in sorted(present - set(listed) - {MANIFEST}):
        problem("extra", f"{vdir}/{fname}", "not listed in the manifest")


def _check_pipeline(fs: Any, report: VerifyReport, pdir: str) -> None:
    """Every complete version, then every alias object beside them."""
    versions = list_versions(fs, pdir)
    for version in versions:
        _check_version(fs, report, pdir, version)
    for entry in fs.ls(pdir, detail=True):
        if entry["type"] != "file":
            continue
        try:
            named = json.loads(fs.cat_file(entry["name"]))["version"]
        except (ValueError, KeyError, TypeError):
            named = None
        if named not in versions:
            report.problems.append(VerifyProblem(
                pipeline=_name(pdir), path=entry["name"], kind="broken_alias",
                detail=f"names {named!r}, not a complete version"))


def verify_url(url: str) -> VerifyReport:
    """Check whatever ``url`` is: a version (it holds a manifest), a pipeline (it holds
    versions) or a registry (its prefixes do); nothing to check is an error, never a pass."""
    fs, root = open_fs(url)
    if fs.exists(f"{root}/{MANIFEST}"):
        target: Target = "version"
    elif list_versions(fs, root):
        target = "pipeline"
    else:
        target = "registry"
    report = VerifyReport(path=url, target=target)
    if target == "version":
        parent = str(PurePosixPath(root).parent)
        _check_version(fs, report, parent, _name(root))
    elif target == "pipeline":
        _check_pipeline(fs, report, root)
    elif fs.isdir(root):
        for entry in fs.ls(root, detail=True):
            if entry["type"] == "directory" and list_versions(fs, entry["name"]):
                _check_pipeline(fs, report, entry["name"])
    if report.versions == 0:
        raise RegistryError(f"nothing to verify: {url} holds no published version")
    return report
