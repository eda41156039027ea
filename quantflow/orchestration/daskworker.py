"""The Dask worker side of ``execution.task_runner: dask``: set up once, then run steps here.

prefect-dask runs a Prefect task (the whole task engine) in a thread of a Dask worker process,
so a TensorFlow step runs in that process, not in a warm worker of our own (a Dask worker is a
daemon process and may not start children). This module makes that process fit for it:

* ``TF_USE_LEGACY_KERAS=1`` and friends are set before TensorFlow is imported there
  (``tfenv.configure_env``), and a worker whose TensorFlow came up with Keras 3 anyway (another
  job imported it first) fails each step with one line saying how to start it instead;
* TensorFlow's intra/inter-op pools get the worker's thread count: Dask's model is one core per
  worker thread, and TensorFlow would otherwise give every worker all of the machine's cores;
* TensorFlow is imported in the background as soon as the plugin is set up, while the run's
  first steps (or other workers) are busy;
* ``variant_timeout_seconds`` cannot kill a thread: the step runs in a thread of its own and
  the task stops waiting for it after the timeout (see ``run``).

``SetupWorker`` is registered by the flow (``daskrunner.ready``); ``dask worker --preload
quantflow.orchestration.daskworker`` does the same when the worker starts. Nothing here is
imported by ``quantflow validate``: it imports distributed at module level.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from distributed import WorkerPlugin

from quantflow.core.errors import StepError

T = TypeVar("T")
MARK = "QUANTFLOW_DASK_WORKER"  # set in a worker's environment once it is set up
_LOCK = threading.Lock()
_WARM: dict[str, Any] = {}  # "done" once warmed up; "error" when that failed
_NTHREADS: list[int] = []  # this worker's thread count, from its setup


def _warm_up() -> None:
    """Import TensorFlow once with quantflow's settings and size its pools; remember a failure
    so every step on this worker reports it (the plugin's thread has nobody to tell)."""
    with _LOCK:
        if _WARM:
            return
        try:
            from quantflow.orchestration.taskrunner import plain_errors

            with plain_errors("starting a Dask worker"):
                _import_tensorflow()
        except StepError as exc:
            _WARM["error"] = exc
        _WARM["done"] = True


def _import_tensorflow() -> None:
    from quantflow.core.tfenv import tf_modules

    tf, _ = tf_modules()
    if not tf.keras.__name__.startswith("tf_keras"):  # Keras 3's is keras._tf_keras.keras
        raise StepError("this Dask worker's TensorFlow came up with Keras 3 (TensorFlow was "
                        "imported before TF_USE_LEGACY_KERAS=1 was set); start the worker with "
                        "TF_USE_LEGACY_KERAS=1 or `dask worker --preload "
                        "quantflow.orchestration.daskworker`")
    from quantflow.orchestration import threads

    # Sized before any step, once per process (threads.apply): Dask's share of the cores is
    # the worker's thread count, whatever the step (the process runner's `heavy` asks the
    # pool, which Dask has not: its slots are already the cores it may use).
    threads.apply(_NTHREADS[0] if _NTHREADS else 1)
    import ai_edge_litert.interpreter  # noqa: F401


def setup_process(nthreads: int) -> None:
    """What every worker process needs before its first step (see the module doc)."""
    from quantflow.core.tfenv import configure_env
    from quantflow.orchestration import runlog

    configure_env()
    runlog.route_worker_output()  # a LocalCluster's workers: into the run's log, like a
    # WarmPool worker; a `dask worker` started elsewhere has no run log and keeps its stderr
    _NTHREADS[:] = [max(1, nthreads)]
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "quantflow")  # step lines reach
    logging.getLogger("quantflow").setLevel(logging.INFO)                # the task run's log
    os.environ[MARK] = "1"
    threading.Thread(target=_warm_up, name="quantflow-warm-up", daemon=True).start()


class SetupWorker(WorkerPlugin):
    """Registered by the flow on every worker of the cluster, once per worker process."""

    idempotent = True
    name = "quantflow-setup"

    def setup(self, worker: Any) -> None:
        setup_process(worker.state.nthreads)


def dask_setup(worker: Any) -> None:
    """``dask worker --preload quantflow.orchestration.daskworker``: set up at start."""
    setup_process(worker.state.nthreads)


def sees(path: str, sha256: str) -> bool:
    """Run on each worker by the flow: the shared-filesystem contract, checked on the spec
    file (same path, same bytes) before any step is sent."""
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest() == sha256
    except OSError:
        return False


def run(fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
    """``fn(*args)`` in this Dask worker once it is warm, its errors made plain
    (taskrunner.run_step), waiting at most ``timeout`` seconds for it (``with_timeout``)."""
    from quantflow.orchestration.taskrunner import run_step

    _warm_up()
    if "error" in _WARM:
        raise _WARM["error"]
    if timeout is None:
        return run_step(fn, *args)
    return with_timeout(lambda: run_step(fn, *args), timeout)


def with_timeout(call: Callable[[], T], timeout: float,
                 note: str = " (on Dask its thread cannot be killed: it runs on in worker "
                 "pid {pid} until it ends)") -> T:
    """``call()`` in a thread of its own, waited for at most ``timeout`` seconds. A thread
    cannot be killed: past the timeout it runs on until it ends (its Dask slot already free,
    its files possibly written after the gate decided) and this raises WorkerLost, which the
    quantize task records as the variant's failure, as it does for the process runner."""
    from quantflow.orchestration.pool import WorkerLost

    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting task thread
            box["error"] = exc

    context = contextvars.copy_context()  # the Prefect task run's, so its log lines land there
    thread = threading.Thread(target=context.run, args=(target,), daemon=True,
                              name="quantflow-step")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise WorkerLost(f"timed out after {timeout:g} s" + note.format(pid=os.getpid()))
    if "error" in box:
        raise box["error"]
    return box["value"]
