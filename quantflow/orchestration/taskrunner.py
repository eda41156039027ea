"""Where the flow's tasks and its TensorFlow steps run.

Prefect runs every task in threads of the flow's own process (``task_runner``), so task states
and logs never depend on a worker process staying alive. A TensorFlow step (prepare, train,
export, each quantize) is sent by its task to a warm worker of the run's ``WarmPool``
(``quantflow.orchestration.pool``): spawned processes that import TensorFlow once up front
(``warm_worker``), split the machine's cores between them, die with the run
(``PR_SET_PDEATHSIG``) and are killed, not awaited, at the end. A worker that dies or passes its
timeout costs only the step it was running, and the next step gets a fresh worker. The pool is
sized from the run's own spec (``execution.max_workers``) inside the flow, so ``quantflow run``
and a deployment's flow run size it the same way.

What crosses back from a worker is unpickled in the flow's process, so a step's exception
crosses as a quantflow type (``plain_errors``): a TensorFlow exception class would import
TensorFlow there (~10 s, its C++ notices on the terminal) just to be printed.

With ``execution.task_runner: dask`` the TensorFlow steps are Prefect tasks on a Dask cluster
instead, run in the Dask worker's own process (``daskrunner``, ``daskworker``); a step finds no
pool there and ``in_worker`` runs it in place.

This replaces a ``ProcessPoolTaskRunner`` subclass that reached into the executor's private
``_executor`` and ``_processes``; nothing here depends on a private field.
"""

from __future__ import annotations

import os
import queue
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from quantflow.core.errors import QuantflowError, StepError
from quantflow.orchestration.pool import WarmPool

T = TypeVar("T")
# Threads only wait for worker processes; ExecutionSpec.max_workers is at most 64, and the flow
# submits no more variants at a time than the pool has workers.
THREADS = 64
_POOL: ContextVar[WarmPool | None] = ContextVar("quantflow_worker_pool", default=None)
_EARLY: list[WarmPool] = []  # started by `quantflow run` for its next flow run


def _die_with_parent() -> None:
    """If the run is killed (even with kill -9), its workers must not go on writing."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


@contextmanager
def plain_errors(stage: str) -> Iterator[None]:
    """A library's error becomes a StepError with the same text (its traceback goes along as a
    note, see worker.portable); quantflow's own (a DataError) pass as they are."""
    try:
        yield
    except QuantflowError:
        raise
    except Exception as exc:
        raise StepError(f"{stage} failed: {type(exc).__name__}: {exc}") from exc


def run_step(fn: Callable[..., T], *args: Any, threads: int | None = None) -> T:
    """What a worker runs for ``in_worker``: the step, its errors made plain (see the module
    doc), on the threads it asked for if the worker is new to TensorFlow (threads.py). The
    stage is the step's module name (quantflow.steps.<stage>)."""
    from quantflow.orchestration import threads as pools

    with plain_errors(fn.__module__.rpartition(".")[2]):
        pools.apply(threads)
        return fn(*args)


def _sized_step(threads: int, fn: Callable[..., T], *args: Any) -> T:
    return run_step(fn, *args, threads=threads)


def warm_worker() -> None:
    """Worker initializer: pay the TensorFlow import once per worker, up front."""
    import logging

    from quantflow.core.tfenv import tf_modules
    from quantflow.orchestration import runlog, shutdown

    shutdown.ignore_interrupts()  # the run handles Ctrl-C and kills its workers
    runlog.route_worker_output()  # C++ notices and warnings go to the run log
    logging.getLogger("quantflow").setLevel(logging.INFO)  # step progress reaches run logs
    _die_with_parent()
    with plain_errors("starting a worker"):  # it reaches the first step's task
        tf_modules()  # imports only: the first step sizes the thread pools (threads.py)
        import ai_edge_litert.interpreter  # noqa: F401


def task_runner() -> Any:
    """The flow's Prefect task runner: threads of the flow process (see the module doc). With
    ``execution.task_runner: dask`` the TensorFlow steps run in a subflow with prefect-dask's
    runner instead (``quantflow.orchestration.daskrunner``), chosen from the run's spec."""
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=THREADS)


def prestart(max_workers: int, count: int) -> WarmPool:
    """Start the next flow run's workers now, from `quantflow run` before its server is up,
    so that their TensorFlow import overlaps the server's start; ``worker_pool`` adopts them.
    Called from the run's main thread (it outlives them; see ``worker_pool``)."""
    discard_early()
    pool = WarmPool(max_workers, initializer=warm_worker)
    pool.prespawn(count)
    _EARLY.append(pool)
    return pool


def discard_early() -> None:
    """Kill workers started by ``prestart`` that no flow run adopted."""
    while _EARLY:
        _EARLY.pop().close()


def run_in(pool: WarmPool, fn: Callable[..., T], *args: Any, heavy: bool = False) -> T:
    """``fn(*args)`` in a worker of ``pool``, sized as ``in_worker`` sizes it."""
    from quantflow.orchestration import threads

    return pool.run(_sized_step, threads.for_step(heavy, pool.size), fn, *args)


@contextmanager
def worker_pool(max_workers: int) -> Iterator[WarmPool]:
    """The run's workers, for the tasks this flow run submits: the ones ``prestart`` started
    if their count fits, else a new pool (none started yet).

    PR_SET_PDEATHSIG fires when the *thread* that started a worker ends: workers are started by
    the flow's thread, task threads or `quantflow run`'s main thread, all of which outlive
    this context.
    """
    early = [p for p in _EARLY if p.size == max_workers]
    pool = early[0] if early else WarmPool(max_workers, initializer=warm_worker)
    if early:
        _EARLY.remove(pool)
    discard_early()
    token = _POOL.set(pool)
    try:
        yield pool
    finally:
        _POOL.reset(token)
        pool.close()


def in_worker(fn: Callable[..., T], *args: Any, timeout: float | None = None,
              heavy: bool = False) -> T:
    """``fn(*args)`` in a warm worker of this flow run (tasks copy the flow's context); in this
    Dask worker when the task runs on one (``daskworker.run``: its pools are sized to the
    worker's threads, Dask's share of the cores); otherwise in this process (a test calling a
    task's ``.fn``). A ``heavy`` step (one that trains, or runs alone) asks the pool for every
    core, others for their share."""
    from quantflow.orchestration import threads

    pool = _POOL.get()
    if pool is not None:
        return pool.run(_sized_step, threads.for_step(heavy, pool.size), fn, *args,
                        timeout=timeout)
    if os.environ.get("QUANTFLOW_DASK_WORKER"):  # set by daskworker.setup_process
        from quantflow.orchestration import daskworker

        return daskworker.run(fn, *args, timeout=timeout)
    return run_step(fn, *args)


def submit_in_turn(names: list[str], submit: Callable[[str], Any], limit: int) \
        -> Iterator[tuple[str, Any]]:
    """Submit in this order, at most ``limit`` at a time, and yield each (name, future) as it
    finishes: a variant waiting for a worker is not a Running task in Prefect yet, and its
    timeout has not started."""
    finished: queue.SimpleQueue[Any] = queue.SimpleQueue()
    waiting, running = list(names), {}
    while waiting or running:
        while waiting and len(running) < limit:
            name = waiting.pop(0)
            future = submit(name)
            running[future.task_run_id] = name
            future.add_done_callback(finished.put)
        done = finished.get()
        done.wait()  # its final state, as reported to Prefect
        yield running.pop(done.task_run_id), done
