"""The process pool the flow runs its TensorFlow steps on.

Spawned workers import TensorFlow once in their initializer, split the machine's cores between
them, die with the run (even with kill -9), and are stopped, not awaited, at the end.
"""

from __future__ import annotations

import os
from typing import Any

from prefect.task_runners import ProcessPoolTaskRunner


def _die_with_parent() -> None:
    """If the run is killed (even with kill -9), its workers must not go on writing."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def warm_worker() -> None:
    """Process-pool initializer: pay the TensorFlow import once per worker, up front."""
    import logging

    from quantflow.core.tfenv import tf_modules
    from quantflow.orchestration import runlog, shutdown

    shutdown.ignore_interrupts()  # the run handles Ctrl-C and kills its workers
    runlog.route_worker_output()  # C++ notices and warnings go to the run log
    logging.getLogger("quantflow").setLevel(logging.INFO)  # step progress reaches run logs
    _die_with_parent()
    tf, _ = tf_modules()
    threads = int(os.environ.get("QUANTFLOW_TF_THREADS", "0"))
    if threads:  # share the cores between workers instead of oversubscribing them
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    import ai_edge_litert.interpreter  # noqa: F401


class QuickExitProcessPool(ProcessPoolTaskRunner):
    """The process pool the flow runs its tasks on (spawn; TensorFlow pre-imported).

    At exit it stops its idle workers instead of waiting for them: every task has reported its
    state by then and task logs travel through the parent, while a worker's teardown after
    TensorFlow (or a replacement worker importing TensorFlow again) costs seconds per run.
    """

    def prespawn(self) -> None:
        """Start every worker now, so all of them import TensorFlow while the first steps run.

        The executor otherwise spawns workers on demand: the second one would start (and
        spend ~10 s importing TensorFlow) only when the variants fan out, stealing CPU from
        them instead of helping.
        """
        executor = getattr(self, "_executor", None)
        if executor is not None:
            for _ in range(self._max_workers):
                executor.submit(int)  # a no-op; each submit with no idle worker spawns one

    def __exit__(self, *exc: Any) -> None:
        executor = getattr(self, "_executor", None)
        for proc in list(getattr(executor, "_processes", {}).values()):
            if proc.is_alive():
                proc.terminate()
        super().__exit__(*exc)


def task_runner(max_workers: int = 2) -> QuickExitProcessPool:
    """Workers split the machine's cores between them (TensorFlow would give each all)."""
    os.environ["QUANTFLOW_TF_THREADS"] = str(max(1, (os.cpu_count() or 1) // max_workers))
    return QuickExitProcessPool(max_workers=max_workers, initializer=warm_worker)
