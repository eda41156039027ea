"""One way out of `quantflow run`: Ctrl-C, SIGTERM or a dead Prefect server end as one
``Interrupted`` with its exit code, within seconds, with nothing recorded or published after it.

Why not KeyboardInterrupt: Python raises it wherever the main thread happens to be, and inside a
finalizer (DVC's dulwich object store has a ``__del__``) it is printed and dropped, after which a
run went on to publish and exit 0. Here the first signal is *recorded* before anything is raised
and the task workers are killed on the spot, so no step finishes after it; whatever records
(DVC) or publishes calls ``check()`` first; a timer ends the process if the clean path (release
the lock, tell Prefect, stop the server) takes longer than the grace period; a second signal
ends it at once. Workers leave the run's process group as they start and ignore SIGINT (the
terminal's Ctrl-C and a shell's ``kill -- -PGID`` go to the whole group): the run decides,
records the stop, and only then kills them (``pool.kill_all``), so a task never sees its worker
die before the stop is known and never records that death as the variant's failure.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from quantflow.core.errors import Exit, Interrupted
from quantflow.orchestration import pool

GRACE_SECONDS = 10.0  # the clean path takes 1-3 s when the Prefect server is alive
MAX_DEFER_SECONDS = 60.0  # a DVC commit in progress may finish, up to this long
_SIGNALS = {signal.SIGINT: (Exit.INTERRUPTED, "SIGINT"),
            signal.SIGTERM: (Exit.TERMINATED, "SIGTERM")}


class _State:
    def __init__(self) -> None:
        self.stop: Interrupted | None = None
        self.installed = False
        self.deferred = 0
        self.poked = False  # the next SIGINT is request() waking the main thread, not a user
        self.announced = False
        self.lock = threading.RLock()  # a second signal may land while the main thread holds it


_state = _State()


def _on_signal(signum: int, frame: Any) -> None:
    """Record first, raise second: if the raise is swallowed, check() still stops the run."""
    if signum == signal.SIGINT and _state.poked:
        _state.poked = False
    elif _state.stop is not None:  # a second signal: the user wants out now
        _exit_now(_state.stop)
    else:
        code, name = _SIGNALS[signal.Signals(signum)]
        _record(Interrupted(code, f"interrupted by {name}; steps that had not finished are "
                                  "not recorded and run again next time"), GRACE_SECONDS)
    if not _state.deferred and _state.stop is not None:
        raise Interrupted(_state.stop.code, _state.stop.message)


def _record(stop: Interrupted, grace: float) -> bool:
    """Keep the first reason; on it, kill the workers and arm the timer. True if it was first."""
    with _state.lock:
        if _state.stop is not None:
            return False
        _state.stop = stop
    pool.kill_all()  # the run's task workers: no step finishes after the stop
    threading.Thread(target=_expire, args=(stop, grace), name="quantflow-grace",
                     daemon=True).start()
    return True


def _expire(stop: Interrupted, grace: float) -> None:
    """End the process unless the clean path got out of handle_signals() in time."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline or (
            _state.deferred and time.monotonic() < deadline + MAX_DEFER_SECONDS):
        time.sleep(0.1)
        if _state.stop is not stop:
            return
    _exit_now(stop)


def _exit_now(stop: Interrupted) -> None:
    """The clean path is stuck (or the user insisted): the kernel releases the lock, the server
    and workers die with this process (PR_SET_PDEATHSIG), nothing more is recorded."""
    announce(stop)
    os._exit(stop.code)


def request(code: int, message: str, grace: float = GRACE_SECONDS) -> None:
    """Stop the run from another thread (the server watchdog): same path as a signal."""
    if not _record(Interrupted(code, message), grace):
        return
    if _state.installed and threading.current_thread() is not threading.main_thread():
        _state.poked = True  # wake the main thread from whatever wait it is in
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)


def check() -> None:
    """Call before recording or publishing: after a stop, nothing more is written."""
    if _state.stop is not None:
        raise Interrupted(_state.stop.code, _state.stop.message)


def requested() -> Interrupted | None:
    """Why the run was stopped, if it was (the first reason wins)."""
    return _state.stop


@contextmanager
def deferred() -> Iterator[None]:
    """A DVC commit must not be cut in half: a signal inside waits for its end, then raises."""
    _state.deferred += 1
    try:
        yield
    finally:
        _state.deferred -= 1
    check()


@contextmanager
def handle_signals() -> Iterator[None]:
    """`quantflow run`'s handlers for SIGINT and SIGTERM, for the duration of the run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with _state.lock:
        _state.stop, _state.poked, _state.announced = None, False, False
    previous = {s: signal.signal(s, _on_signal) for s in _SIGNALS}
    _state.installed = True
    try:
        yield
    finally:
        _state.installed = False
        for s, handler in previous.items():
            signal.signal(s, handler)
        with _state.lock:
            _state.stop = None  # the clean path is done: disarms the timer


def reclaim() -> None:
    """Prefect's flow engine puts its own SIGTERM handler in for the flow run; under
    `quantflow run` ours comes back, so SIGTERM takes the recorded path too. A deployment's
    flow run (no `quantflow run` around it) keeps Prefect's, which its cancellation needs."""
    if _state.installed and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_signal)


def ignore_interrupts() -> None:
    """Task-worker initializer: signals sent to the run's process group are for the run, which
    kills its workers once it has recorded the stop. A session of its own (quantflow/__init__
    already made one, this is the fallback) keeps SIGTERM away without ignoring it, so that
    multiprocessing's own terminate() still works; PR_SET_PDEATHSIG ties it to the run."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.getsid(0) != os.getpid():
        os.setsid()


def announce(stop: Interrupted) -> None:
    """The one line a stopped run ends with (printed once, whichever path gets there)."""
    from quantflow.orchestration.runlog import where

    with _state.lock:
        if _state.announced:
            return
        _state.announced = True
    print(f"quantflow: {stop.message}{where(last=True)}", file=sys.stderr, flush=True)
