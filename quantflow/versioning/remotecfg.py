"""The DVC remote as a worker sees it: is this run's data on it, where is it, can we reach it.

``enabled`` says whether data comes from the remote (``QUANTFLOW_DATA=remote``, set by a
git-source deployment). ``check_remote`` turns an unreachable remote into one error naming
the remote, its address and what was tried, before any work starts: without it DVC finds out
only at the first pull or push, after retrying for seconds to minutes, and says less.
``changed`` is DVC's `repro --allow-missing` rule, for a clone that holds no artifacts yet.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from quantflow.core.errors import UserError

ENV, REMOTE = "QUANTFLOW_DATA", "remote"
PROBE_SECONDS = 5.0
# Where a URL scheme's server listens when the URL names no port.
PORTS = {"s3": 443, "https": 443, "http": 80, "ssh": 22, "webdav": 80, "webdavs": 443,
         "gs": 443, "azure": 443, "hdfs": 8020}
SERVICE_HOSTS = {"s3": "s3.amazonaws.com", "gs": "storage.googleapis.com"}


def enabled() -> bool:
    """Whether this process takes its data from the DVC remote (a git-source deployment)."""
    return os.environ.get(ENV, "").strip().lower() == REMOTE


def changed(repo: Any, names: list[str]) -> set[str]:
    """Stages among ``names`` (and upstream of them) that changed by DVC's allow-missing rule:
    an absent output or an absent dep that an unchanged upstream stage records is no change.
    What `dvc repro --allow-missing` would run; the caller holds the repo open."""
    stages = {s.addressing: s for n in names for s in repo.stage.collect(n, with_deps=True)}
    every = list(stages.values())
    with repo.lock:
        return {name for name, s in stages.items()
                if s.changed(allow_missing=True, upstream=every)}


@dataclass(frozen=True)
class Remote:
    name: str
    url: str
    endpoint: str | None = None  # an S3-compatible server's endpointurl (MinIO, moto, ...)

    def address(self) -> tuple[str, int] | None:
        """(host, port) the remote's server listens on; None for a local folder."""
        scheme = urlparse(self.url).scheme
        if scheme in ("", "file") or len(scheme) == 1:  # a path (a drive letter on Windows)
            return None
        where = urlparse(self.endpoint or self.url)
        host = where.hostname if self.endpoint or scheme not in SERVICE_HOSTS else None
        return host or SERVICE_HOSTS.get(scheme, ""), where.port or PORTS.get(where.scheme, 443)

    def __str__(self) -> str:
        via = f", endpointurl {self.endpoint}" if self.endpoint else ""
        return f"DVC remote {self.name!r} ({self.url}{via})"


def default_remote(workspace: Path) -> Remote | None:
    """The default remote as DVC resolves it (.dvc/config, config.local, global, system)."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    try:
        repo = Repo(str(workspace))
    except NotDvcRepoError:
        raise UserError(f"{workspace} is not a DVC repository: run `quantflow init` (or "
                        "`dvc init`) and commit .dvc/") from None
    with repo:
        conf = repo.config
        name = conf["core"].get("remote")
        if not name or name not in conf["remote"]:
            return None
        entry = conf["remote"][name]
    return Remote(name, str(entry["url"]), entry.get("endpointurl"))


def _probe(host: str, port: int) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=PROBE_SECONDS):
            return None
    except OSError as exc:
        return f"{type(exc).__name__}: {exc.strerror or exc}"


def _bucket_problem(workspace: Path, remote: Remote) -> str | None:
    """Ask the remote's own filesystem for its top folder (an S3 bucket): wrong credentials
    or a missing bucket are found here rather than after a run's work."""
    from dvc.repo import Repo

    try:
        with Repo(str(workspace)) as repo:
            odb = repo.cloud.get_remote_odb(remote.name)
            top = odb.path.split("/", 1)[0] if odb.fs.protocol in ("s3", "gs", "gcs") else None
            if top and not odb.fs.exists(top):
                return f"bucket {top!r} does not exist"
    except Exception as exc:  # credentials, TLS, a refused listing: the library's words
        return f"{type(exc).__name__}: {exc}"
    return None


def check_remote(workspace: Path) -> Remote | None:
    """The default remote, checked: its server answers a TCP connection within 5 s and, for an
    object store, its bucket exists. A UserError (exit 2) naming the remote, the address and
    what was tried otherwise. None when no remote is configured."""
    remote = default_remote(workspace)
    if remote is None:
        raise UserError("no default DVC remote: data cannot move between workers; run `dvc "
                        "remote add -d storage s3://bucket/prefix` and commit .dvc/config")
    address = remote.address()
    if address is not None:
        host, port = address
        problem = _probe(host, port)
        if problem:
            raise UserError(f"{remote} is unreachable: tried a TCP connection to "
                            f"{host}:{port} ({PROBE_SECONDS:.0f} s timeout): {problem}")
        problem = _bucket_problem(workspace, remote)
        if problem:
            raise UserError(f"{remote} answered at {host}:{port}, but listing it failed: "
                            f"{problem}")
    return remote
