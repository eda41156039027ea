"""prefect-dask's task runner with one change: a Dask task that ended without a Prefect state.

prefect-dask's Dask task runs the Prefect task engine and returns the task run's final state.
When the Dask task itself fails instead (``KilledWorker``: the worker died running it
``distributed.scheduler.allowed-failures`` times; the worker could not unpickle it, a module
missing there), its ``PrefectDaskFuture`` has no final state: ``wait`` swallows the error,
``state`` asks the Prefect API (which still says Running) and ``result(raise_on_failure=False)``
raises anyway, so one lost variant would crash the flow's fan-out. Here such a future ends
Failed, carrying the Dask error, and the flow treats it as any failed variant.

Imported only on the Dask path (it imports prefect_dask at module level); the runner is
pickled to the workers with the flow, so it lives in an importable module.
"""

from __future__ import annotations

from typing import Any

from prefect.states import Failed
from prefect_dask.task_runners import DaskTaskRunner, PrefectDaskFuture


class DaskFuture(PrefectDaskFuture):
    def wait(self, timeout: float | None = None) -> None:
        super().wait(timeout)
        future = self._wrapped_future
        if self._final_state is None and future.status in ("error", "cancelled"):
            exc = future.exception() if future.status == "error" else \
                RuntimeError("its Dask task was cancelled")
            self._final_state = Failed(message=f"Dask task failed: {type(exc).__name__}: "
                                               f"{exc}", data=exc)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any:
        self.wait(timeout)
        return super().result(timeout=timeout, raise_on_failure=raise_on_failure)


class QuantflowDaskTaskRunner(DaskTaskRunner):
    def submit(self, task: Any, parameters: dict[str, Any], wait_for: Any = None,
               dependencies: Any = None) -> DaskFuture:
        future = super().submit(task, parameters, wait_for, dependencies)
        return DaskFuture(wrapped_future=future.wrapped_future,
                          task_run_id=future.task_run_id)
