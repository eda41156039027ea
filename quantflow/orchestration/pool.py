"""Warm worker processes of our own, one job at a time each: a lost worker costs one job.

Why not ``concurrent.futures.ProcessPoolExecutor`` (what Prefect's ProcessPoolTaskRunner is
built on): when one of its workers dies (segfault, OOM kill) the executor is *broken* and fails
every job still running or queued, and it has no public way to kill the one worker behind a
hung job. Here each worker is a ``multiprocessing`` process with a pipe of its own
(``quantflow.orchestration.worker``), so the parent knows which job a dead process held, kills
exactly that one on a timeout, and starts a replacement when the next job needs one; the other
workers carry on. Only public multiprocessing API is used.

``kill_all`` is the way out of a stopped run (quantflow.orchestration.shutdown): it kills every
worker of every open pool in this process at once, from a signal handler, and the pools start
no new worker after it.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from quantflow.orchestration.worker import serve


class WorkerLost(RuntimeError):
    """The worker process running a job died or was killed; the job did not finish."""


@dataclass
class _Worker:
    proc: BaseProcess
    conn: Connection
    ready: bool = False


_OPEN: weakref.WeakSet[WarmPool] = weakref.WeakSet()  # pools not yet closed, for kill_all


def kill_all() -> None:
    """Kill every worker of every open pool now, and let none start after: the run was stopped.
    Safe in a signal handler: it takes no lock (a thread of this process may hold one)."""
    for pool in list(_OPEN):
        pool.stop()


def _death(proc: BaseProcess, starting: bool) -> WorkerLost:
    proc.join(timeout=5)
    code = proc.exitcode
    how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 \
        else f"exited with code {code}"
    return WorkerLost(f"worker {how}{' while starting' if starting else ''}")


class WarmPool:
    """Up to ``size`` warm workers, started up front (``prespawn``) or when a job needs one.

    ``run`` is called from many threads at once (one per Prefect task): each call takes an idle
    worker, starts one, or waits for one to come free.
    """

    def __init__(self, size: int, initializer: Callable[[], None] | None = None) -> None:
        self.size = size
        self.started: list[int] = []  # the pid of every process started, replacements too
        self._initializer = initializer
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._idle: list[_Worker] = []
        self._changed = threading.Condition()
        self._stopped = False
        _OPEN.add(self)

    def prespawn(self, count: int | None = None) -> None:
        """Start workers now, so they warm up (import TensorFlow) while the first steps run."""
        with self._changed:
            while not self._stopped and len(self._workers) < min(self.size, count or self.size):
                self._idle.append(self._spawn())

    def run(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Any:
        """``fn(*args)`` in a worker. Raises what it raised, or WorkerLost when the worker died
        or ran past ``timeout`` seconds (counted from the job's start, not the warm-up)."""
        worker = self._acquire()
        try:
            if not worker.ready:
                self._receive(worker, None, starting=True)
                worker.ready = True
            try:
                worker.conn.send((fn, args))
            except OSError:  # it died since it said ready
                raise _death(worker.proc, starting=False) from None
            kind, payload = self._receive(worker, timeout, starting=False)
        except BaseException:  # lost, timed out, or this thread interrupted: the worker goes
            self._discard(worker)
            raise
        self._release(worker)
        if kind == "error":
            raise payload
        return payload

    def stop(self) -> None:
        """Kill every worker now and start no more; a ``run`` waiting for one gets WorkerLost.
        Takes no lock, so that a signal handler can call it whatever the threads hold."""
        self._stopped = True
        for w in list(self._workers):
            try:
                w.proc.kill()
            except (OSError, ValueError, AttributeError):  # gone, closed, or never started
                pass

    def close(self) -> None:
        """Kill every worker: the jobs are over, and a TensorFlow teardown costs seconds."""
        with self._changed:
            for w in self._workers:
                w.proc.kill()
            for w in self._workers:
                w.proc.join(timeout=5)
                w.conn.close()
            self._workers, self._idle = [], []
        _OPEN.discard(self)

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=serve, args=(child, self._initializer), daemon=True,
                                 name=f"quantflow-worker-{len(self.started) + 1}")
        proc.start()
        child.close()
        self.started.append(proc.pid or 0)
        worker = _Worker(proc, parent)
        self._workers.append(worker)
        if self._stopped:  # stop() ran while this one was starting: it saw the list without it
            proc.kill()
        return worker

    def _acquire(self) -> _Worker:
        with self._changed:
            while True:
                if self._stopped:
                    raise WorkerLost("the run was stopped")
                while self._idle:
                    worker = self._idle.pop(0)
                    if worker.proc.is_alive():
                        return worker
                    self._workers.remove(worker)  # died while idle (an OOM kill, say)
                if len(self._workers) < self.size:
                    return self._spawn()
                self._changed.wait(1.0)  # stop() takes no lock, so it cannot notify

    def _release(self, worker: _Worker) -> None:
        """Last in, first out: steps one after another reuse one worker (sized for every
        core, see threads.py), and the others stay fresh for the steps that share them."""
        with self._changed:
            self._idle.insert(0, worker)
            self._changed.notify()

    def _discard(self, worker: _Worker) -> None:
        worker.proc.kill()
        worker.proc.join(timeout=5)
        worker.conn.close()
        with self._changed:
            if worker in self._workers:
                self._workers.remove(worker)
            self._changed.notify()  # its slot is free for a replacement

    def _receive(self, worker: _Worker, timeout: float | None, starting: bool) \
            -> tuple[str, Any]:
        """The worker's next reply, re-emitting its log records on the way; WorkerLost when
        it dies first or ``timeout`` passes; the initializer's exception while starting."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = wait([worker.conn, worker.proc.sentinel], left)
            if not ready:
                raise WorkerLost(f"timed out after {timeout:g} s")
            if worker.conn not in ready:  # the process ended without a word
                raise _death(worker.proc, starting)
            try:
                kind, payload = worker.conn.recv()
            except (EOFError, OSError):
                raise _death(worker.proc, starting) from None
            if kind == "log":
                logging.getLogger(payload.name).handle(payload)
            elif kind == "error" and starting:
                raise payload
            else:
                return kind, payload
