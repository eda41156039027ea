"""DVC's last "nothing to do" for a pipeline, remembered with everything that answer read.

DVC owns staleness (docs/DVC.md); asking it (`dvc status` on an open repo: stage collection,
YAML parsing, hashing) takes 1-2 s, and imports DVC. A scheduled run that finds nothing to do
should cost a fraction of that. So when DVC's verdict is "every stage clean", quantflow writes
a mark: a digest of every input of that verdict as it is then. The next plan recomputes the
digest (stats and a few small files, no DVC import) and, when it is the same, takes DVC's
verdict as still standing. Anything different, and DVC is asked again. The mark never says
"stale" and never picks stages: it can only skip asking DVC a question whose inputs have not
changed, as DVC's own state database skips hashing a file whose inode, size and mtime have
not.

What the digest covers (an input missed here would be a change DVC sees and the mark not):
* the request: workspace, spec file, pipeline, overrides, and ``QUANTFLOW_DATA``;
* by content: the spec file, dvc.yaml, dvc.lock, .dvc/config, .dvcignore and every params
  file dvc.lock names (the toolchain file among them);
* by (size, mtime, inode), recursively: every dep and out that dvc.lock records, of every
  stage, a team's own included;
* what regenerating dvc.yaml and the toolchain file reads besides the spec: quantflow's own
  source files, and the folders that hold the installed distributions (installing, removing
  or upgrading any package changes their mtime).

DVC's verdict is recorded in two places: a `dvc status` that found every stage clean
(``plan_run``), and the end of a run that committed every stage its plan named, when that plan
came from DVC and dvc.yaml holds quantflow's stages only (``finish_run``): DVC has just
recorded the files as they are, and every other stage was clean at plan time.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import yaml

from quantflow.core import io
from quantflow.core.request import RunRequest

VERSION = 1
MARKS = Path(".dvc/tmp/quantflow-clean")  # DVC's tmp: git-ignored, per workspace
CONTROL = ("dvc.yaml", "dvc.lock", ".dvc/config", ".dvcignore")
PACKAGE = Path(__file__).resolve().parents[1]  # the quantflow package folder
# libyaml when present: dvc.lock runs to thousands of lines
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _mark(request: RunRequest) -> Path:
    name = hashlib.sha256(request.name.encode()).hexdigest()[:16]
    return request.workspace / MARKS / f"{name}.json"


def _stat(path: Path) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "-"
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def _tree(root: Path) -> Iterator[str]:
    """A file's stat, or every file's under a folder, in a stable order."""
    if not root.is_dir():
        yield f"{root}={_stat(root)}"
        return
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for f in sorted(files):
            path = Path(folder, f)
            yield f"{path}={_stat(path)}"


def _recorded(lock: dict) -> tuple[list[str], list[str]]:
    """(dep and out paths, params files) of every stage dvc.lock records."""
    paths, params = [], []
    for stage in (lock.get("stages") or {}).values():
        for key in ("deps", "outs"):
            paths += [e["path"] for e in stage.get(key) or [] if isinstance(e, dict)]
        params += list(stage.get("params") or {})
    return paths, params


def _code() -> Iterator[str]:
    """quantflow's sources (not its bytecode, which Python writes as it pleases) and the
    folders of installed distributions (not the working directory Python put on sys.path)."""
    yield from (line for line in _tree(PACKAGE) if line.partition("=")[0].endswith(".py"))
    for entry in sorted({p for p in sys.path if p.endswith(("site-packages", "dist-packages"))
                         and os.path.isdir(p)}):
        yield f"{entry}={_stat(Path(entry))}"


def fingerprint(request: RunRequest) -> str | None:
    """The digest of everything DVC's verdict on ``request`` reads; None without dvc.lock."""
    ws = request.workspace
    lock_file = ws / "dvc.lock"
    if not lock_file.is_file():
        return None
    digest = hashlib.sha256()
    head = [VERSION, str(ws.resolve()), request.spec_file, request.name,
            list(request.overrides), os.environ.get("QUANTFLOW_DATA", "")]
    digest.update(json.dumps(head).encode())
    lock_text = lock_file.read_bytes()
    paths, params = _recorded(yaml.load(lock_text, Loader=LOADER) or {})
    for rel in [request.spec_file, *CONTROL, *sorted(set(params))]:
        path = ws / rel
        digest.update(f"\n{rel}\n".encode())
        digest.update(path.read_bytes() if path.is_file() else b"-")
    stats = [line for rel in sorted(set(paths)) for line in _tree(ws / rel)]
    for line in stats + list(_code()):
        digest.update(f"\n{line}".encode())
    return digest.hexdigest()


def holds(request: RunRequest) -> bool:
    """Whether DVC's last "nothing to do" for this pipeline still stands."""
    try:
        saved = json.loads(_mark(request).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return saved.get("fingerprint") is not None and saved["fingerprint"] == fingerprint(request)


def write(request: RunRequest) -> None:
    """Remember DVC's "nothing to do" as of now (after DVC said so, or recorded it)."""
    found = fingerprint(request)
    if found is not None:
        io.write_text(_mark(request), json.dumps({"fingerprint": found}) + "\n")

