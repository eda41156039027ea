"""Keeping `dvc repro` and `quantflow run` apart in one workspace, through DVC's own locks.

DVC guards a workspace with two files in ``.dvc/tmp``: ``lock``, held by a DVC command while it
works (and released while a stage's command runs), and ``rwlock``, JSON naming the files each
running stage reads and writes with its pid. Between the two, a running `dvc repro` is
visible at every instant, also between two of its `quantflow step` processes, when no
quantflow process holds the pipeline lock.

The other way round, ``claim`` puts a `quantflow run`'s files into ``rwlock`` as DVC does for
a stage it runs: a `dvc repro` started meanwhile stops with DVC's "is busy" error before it
deletes any output (DVC removes a stage's outputs before running its command).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from quantflow.core.errors import DvcError, PipelineBusy

BUSY_FILES = "a DVC command is using this pipeline's files; wait for it to finish"
RUNS_STAGES = re.compile(r"(?:^|[/\s])dvc(?:\.exe)?(?:\s+-\S+)*\s+(repro|exp)\b")


def _cmdline(pid: int) -> str:
    import psutil

    try:
        return " ".join(psutil.Process(pid).cmdline())
    except (psutil.Error, OSError):
        return ""


def describe(cmd: str) -> str:
    """What a command line is, in the words of a refusal: "dvc repro", "quantflow run", ..."""
    if m := RUNS_STAGES.search(cmd):
        return f"dvc {m.group(1)}"
    return "quantflow run" if "quantflow" in cmd or "prefect" in cmd else f"`{cmd}`"


def repro_parent() -> int:
    """The pid of the `dvc repro` that started this process (a stage's command), else ours."""
    import psutil

    for parent in psutil.Process().parents():
        if RUNS_STAGES.search(_cmdline(parent.pid)):
            return parent.pid
    return os.getpid()


def refusal(pid: int, cmd: str) -> str:
    """The one line either side prints when the other one runs."""
    return f"{describe(cmd)} is running in this workspace (pid {pid}); wait for it to finish"


def _corrupted(path: Path) -> DvcError:
    return DvcError(f"{path} is corrupted (not valid JSON: a DVC process probably stopped while "
                    "rewriting it); it is safe to remove when no DVC process is running in this "
                    f"workspace: rm {path}")


def rwlock_holders(workspace: Path) -> list[tuple[int, str]]:
    """(pid, command) of every live process other than this one with files in DVC's rwlock.

    Read under DVC's own guard of the file (``rwlock.lock``), since DVC rewrites it in place.
    """
    import psutil
    from dvc.lock import LockError, make_lock

    tmp = workspace / ".dvc" / "tmp"
    path = tmp / "rwlock"
    if not path.exists():
        return []
    try:
        with make_lock(str(tmp / "rwlock.lock"), tmp_dir=str(tmp)):
            data = json.loads(path.read_text(encoding="utf-8"))
        infos = [*data.get("write", {}).values(),
                 *(i for infos in data.get("read", {}).values() for i in infos)]
        found = {(int(i["pid"]), str(i["cmd"])) for i in infos}
    except FileNotFoundError:
        return []
    except (ValueError, TypeError, KeyError, AttributeError):  # what DVC would refuse too
        raise _corrupted(path) from None
    except LockError:  # DVC kept its guard for 3 s: it is busy rewriting the file
        raise PipelineBusy(BUSY_FILES) from None
    return sorted((pid, cmd) for pid, cmd in found
                  if pid != os.getpid() and psutil.pid_exists(pid))


def lock_holder(workspace: Path) -> int | None:
    """The pid holding DVC's repository lock, or None. Probed by taking it for an instant
    (DVC's own lock waits and retries for 3 s, so a DVC command starting now is not hurt)."""
    try:
        f = open(workspace / ".dvc" / "tmp" / "lock", "r+")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = f.read().strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


def running_stages(workspace: Path) -> str | None:
    """The refusal ("dvc repro is running in this workspace (pid N); ...") while a DVC command
    that runs stages holds either of DVC's locks here; None otherwise (a `dvc status` is
    waited for instead)."""
    if not (workspace / ".dvc").is_dir():
        return None
    holders = rwlock_holders(workspace)
    pid = lock_holder(workspace)
    if pid and pid != os.getpid():
        holders.append((pid, _cmdline(pid)))
    for pid, cmd in holders:
        if RUNS_STAGES.search(cmd):
            return refusal(pid, cmd)
    return None


@contextmanager
def claim(workspace: Path, read: list[str], write: list[str]) -> Iterator[None]:
    """Hold DVC rwlock entries on a run's files (``write``: its outputs, ``read``: files of
    others it reads), relative to ``workspace``, for the whole run.

    The entries carry this process's pid and command line, the identity DVC gives its own
    operations here, so this process's `dvc commit` and `dvc status` pass them by.
    """
    if not (workspace / ".dvc").is_dir():
        yield
        return
    from dvc.config import Config
    from dvc.fs import localfs as fs
    from dvc.lock import LockError
    from dvc.rwlock import RWLockFileCorruptedError, RWLockFileFormatError, rwlock

    # Where DVC keeps its locks and how it takes them, from DVC's own config (every level),
    # without opening the repo: 0.5 s that a no-op run can't spare.
    root = str(workspace.resolve())
    tmp = os.path.join(root, ".dvc", "tmp")
    fs.makedirs(tmp, exist_ok=True)
    hardlink = bool(Config(dvc_dir=os.path.join(root, ".dvc"))["core"].get("hardlink_lock"))
    held = ExitStack()
    paths = [[os.path.normpath(os.path.join(root, p)) for p in files] for files in (read, write)]
    try:
        held.enter_context(rwlock(tmp, fs, " ".join(sys.argv), *paths, hardlink))
    except LockError:
        who = [refusal(pid, cmd) for pid, cmd in rwlock_holders(workspace)]
        raise PipelineBusy(who[0] if who else BUSY_FILES) from None
    except (RWLockFileCorruptedError, RWLockFileFormatError):
        raise _corrupted(Path(tmp) / "rwlock") from None
    with held:
        yield
