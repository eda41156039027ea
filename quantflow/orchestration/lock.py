"""One run of a pipeline at a time, whether `quantflow run` or `dvc repro` starts it.

The pipeline's fcntl lock (``artifacts/.<pipeline>.lock``, holding "<kind> (pid N)") is taken
by `quantflow run` and by every `quantflow step`. Since `dvc repro` runs its steps one after
another, a `quantflow run` also refuses while DVC's own locks show a `dvc repro` between two
steps, and claims its files in DVC's rwlock so that a `dvc repro` started later stops before
it deletes them (quantflow.versioning.dvclock).

`quantflow run` takes a pipeline when it checks it (``check_not_running``, before Prefect
starts) and keeps it until the flow run of it ends, so no `dvc repro` fits in between; an
up-to-date pipeline is let go as soon as the plan says so.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import IO

from quantflow.core.errors import PipelineBusy
from quantflow.core.request import RunRequest
from quantflow.versioning import dvclock
from quantflow.versioning.dvcgen import pipeline_stages

RUN, REPRO, STEP = "quantflow run", "dvc repro", "quantflow step"  # who holds the lock
_HELD: dict[str, ExitStack] = {}  # pipelines this process took in check_not_running


def _busy(request: RunRequest, holder: str) -> PipelineBusy:
    """The holder's refusal; a run of this pipeline (not a workspace-wide `dvc repro`) names
    the pipeline, since one `quantflow run` may cover several."""
    m = re.fullmatch(r"(.+) \(pid (\d+)\)", holder)
    kind, pid = (m[1], m[2]) if m else ("another run", holder.removeprefix("pid ") or "?")
    which = "" if kind == REPRO else f" (pipeline {request.name!r})"
    return PipelineBusy(f"{kind} is running in this workspace (pid {pid}); wait for it to "
                        f"finish{which}")


def _holder(f: IO[str]) -> str:
    """The holder's identity, which it writes right after taking the lock: wait a moment for
    it rather than report an empty file."""
    for _ in range(50):
        f.seek(0)
        if text := f.read().strip():
            return text
        time.sleep(0.01)
    return ""


@contextmanager
def _locked(request: RunRequest, kind: str) -> Iterator[None]:
    """The pipeline's fcntl lock, the file naming its holder ("dvc repro (pid N)").

    Under `dvc repro` (kind REPRO) the stage's own DVC is the one running; any other holder
    first looks for a `dvc repro` in the workspace, which holds DVC's locks between its steps.
    """
    lock = request.paths.lock
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(request, _holder(f)) from None
        f.seek(0)
        previous = f.read().strip()
        if kind != REPRO and _repro_alive(previous):  # between two steps of a dvc repro
            fcntl.flock(f, fcntl.LOCK_UN)
            raise _busy(request, previous)
        try:
            pid = dvclock.repro_parent() if kind == REPRO else os.getpid()
            f.seek(0)
            f.truncate()
            f.write(f"{kind} (pid {pid})")
            f.flush()
            other = None if kind == REPRO else dvclock.running_stages(request.workspace)
            if other:
                raise PipelineBusy(other)
            yield
        finally:
            if kind != REPRO:  # a dvc repro's name stays until its next step: see _repro_alive
                f.seek(0)
                f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)


def _repro_alive(holder: str) -> bool:
    """A `dvc repro` whose step last held the lock and which still runs: its next step is
    coming, so a `quantflow run` must not slip into the gap between two of its steps (DVC's
    own locks leave short gaps there; measured: a run once got in between gate and publish)."""
    m = re.fullmatch(rf"{REPRO} \(pid (\d+)\)", holder)
    if not m:
        return False
    import psutil

    try:
        return "dvc" in " ".join(psutil.Process(int(m[1])).cmdline())
    except (psutil.Error, ValueError):
        return False


@contextmanager
def _guard(request: RunRequest, kind: str) -> Iterator[None]:
    with _locked(request, kind):
        if kind != RUN:
            yield
            return
        stages = pipeline_stages(request.spec, request.name)
        ours = {f for s in stages for f in s.produces}
        theirs = sorted({d for s in stages for d in s.deps} - ours)
        with dvclock.claim(request.workspace, theirs, sorted(ours)):
            yield


def check_not_running(request: RunRequest) -> None:
    """Take the pipeline for this process's `quantflow run`, or raise PipelineBusy (DvcError:
    DVC's rwlock is corrupt). The flow's ``pipeline_lock`` takes it over and releases it; an
    up-to-date pipeline, whose flow never runs, is released when the process exits."""
    key = str(request.paths.lock)
    if key not in _HELD:
        with ExitStack() as stack:
            stack.enter_context(_guard(request, RUN))
            _HELD[key] = stack.pop_all()


def release(request: RunRequest) -> None:
    """Let go of a pipeline taken by ``check_not_running`` that no flow run will take over."""
    held = _HELD.pop(str(request.paths.lock), None)
    if held is not None:
        held.close()


@atexit.register
def _release_all() -> None:
    while _HELD:
        _HELD.popitem()[1].close()


@contextmanager
def pipeline_lock(request: RunRequest, kind: str = RUN) -> Iterator[None]:
    """Hold the pipeline: refuse with one line while another run of it, or a `dvc repro` in
    the workspace, runs. `quantflow run` (kind RUN) also claims its files in DVC's rwlock."""
    held = _HELD.pop(str(request.paths.lock), None) if kind == RUN else None
    with held if held is not None else _guard(request, kind):
        yield
