"""The flow side of ``execution.task_runner: dask``: which cluster, and is it fit to use.

With ``dask`` the flow's TensorFlow steps (prepare, train, export and every variant) are
Prefect tasks on a Dask cluster through prefect-dask's ``DaskTaskRunner``; gate, publish and
every DVC command stay in the flow's own process, which then needs no TensorFlow worker of its
own. The storage contract is a shared filesystem: every Dask worker sees the workspace at the
same path (``sees`` checks it on the spec file before any step is sent).

A scheduler that cannot be reached, has no worker, or whose workers do not see the workspace
is one ``ClusterUnusable`` line (exit 2) before any work starts: ``quantflow run`` checks it
before Prefect starts (``preflight``), a deployment's flow run as its Dask part starts
(``ready``). distributed and prefect_dask are imported inside the functions.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from quantflow.core.errors import UserError
from quantflow.core.request import RunRequest
from quantflow.core.spec import DaskSpec


class ClusterUnusable(UserError):
    """The Dask scheduler of ``execution.dask`` cannot run this pipeline's steps."""


@dataclass(frozen=True)
class Slots:
    """How many variants the flow submits at once (``_quantize`` reads ``size``): all of
    them. A Dask task waiting in the scheduler's queue has no Prefect task run yet, so nothing
    looks Running while it waits, and the scheduler balances the workers."""

    size: int


def task_runner(dask: DaskSpec) -> Any:
    """prefect-dask's runner (daskfutures) for the run's cluster: the scheduler at ``address``, or a
    LocalCluster of ``local`` on loopback (no fixed port, no dashboard) for this run only
    (its workers' output goes to the run's log, as the process runner's does)."""
    from quantflow.orchestration.daskfutures import QuantflowDaskTaskRunner as DaskTaskRunner

    # distributed's INFO lines (a LocalCluster's scheduler runs in this process) are noise on
    # the terminal: quantflow's own lines say what matters
    logging.getLogger("distributed").setLevel(logging.WARNING)
    timeout = {"timeout": dask.connect_timeout_seconds}
    if dask.address is not None:
        return DaskTaskRunner(address=dask.address, client_kwargs=timeout)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster", client_kwargs=timeout,
        cluster_kwargs={"n_workers": dask.local.n_workers, "processes": True,
                        "threads_per_worker": dask.local.threads_per_worker,
                        "host": "127.0.0.1", "scheduler_port": 0,
                        # its HTTP server would take :8787 even without a dashboard
                        "dashboard_address": "127.0.0.1:0",
                        "scheduler_kwargs": {"dashboard": False}})


def _tried(dask: DaskSpec) -> str:
    return (f"the Dask scheduler {dask.address} (execution.dask.address), tried for "
            f"{dask.connect_timeout_seconds:g} s")


def check(client: Any, request: RunRequest) -> None:
    """A worker to run on, and every worker sees the workspace at the same path."""
    from quantflow.orchestration import daskworker

    dask = request.spec.execution.dask
    try:
        client.wait_for_workers(1, timeout=dask.connect_timeout_seconds)
    except (TimeoutError, OSError) as exc:
        raise ClusterUnusable(f"{_tried(dask)}: it has no worker ({type(exc).__name__}); "
                              "start one with `dask worker <address>`") from None
    spec = request.workspace / request.spec_file
    digest = hashlib.sha256(spec.read_bytes()).hexdigest()
    seen = client.run(daskworker.sees, str(spec), digest)
    blind = sorted(w for w, ok in seen.items() if not ok)
    if blind:
        raise ClusterUnusable(
            f"Dask worker(s) {', '.join(blind)} of {dask.address or 'the LocalCluster'} do "
            f"not see the workspace: {spec} is missing or differs there. task_runner: dask "
            "needs the workspace at the same path on every worker (a shared filesystem)")


def preflight(requests: list[RunRequest]) -> None:
    """``quantflow run``: every scheduler the runs will use, before anything is written or
    Prefect starts. A LocalCluster has nothing to reach."""
    seen: set[str] = set()
    for r in requests:
        dask = r.spec.execution.dask
        if r.spec.execution.task_runner != "dask" or dask.address is None \
                or dask.address in seen:
            continue
        seen.add(dask.address)
        client = connect(dask)
        try:
            check(client, r)
        finally:
            client.close()


def connect(dask: DaskSpec) -> Any:
    """A client of the scheduler at ``dask.address``, or the one line saying why not.
    distributed's own timeout does not cover a peer that accepts the connection and never
    answers (it waits for ever): the attempt gets a deadline of its own."""
    import distributed

    from quantflow.orchestration.daskworker import with_timeout
    from quantflow.orchestration.pool import WorkerLost

    seconds = dask.connect_timeout_seconds
    try:
        return with_timeout(lambda: distributed.Client(
            dask.address, timeout=seconds, set_as_default=False), seconds + 5, note="")
    except (OSError, TimeoutError, WorkerLost) as exc:
        raise ClusterUnusable(f"cannot reach {_tried(dask)}: {exc}{_probe(dask)}") from None


def _probe(dask: DaskSpec) -> str:
    """distributed says only "timed out"; one plain TCP connect says why (refused, no route,
    unknown host), or that something listens there that is not a Dask scheduler."""
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(dask.address)
    try:
        socket.create_connection((where.hostname, where.port), timeout=2).close()
    except OSError as exc:
        return f" ({exc.strerror or type(exc).__name__})"
    return " (the port accepts connections: is it a Dask scheduler, and the protocol right?)"


def ready(request: RunRequest) -> Any:
    """Inside the Dask part of the flow: its task runner's client, checked, with every worker
    set up for TensorFlow steps (``daskworker.SetupWorker``)."""
    from prefect.context import FlowRunContext

    from quantflow.orchestration import daskworker
    from quantflow.orchestration.pool import WorkerLost

    dask, runner = request.spec.execution.dask, FlowRunContext.get().task_runner
    try:  # it connects (or starts the LocalCluster) on first use; see `connect`
        client = daskworker.with_timeout(lambda: runner.client,
                                         dask.connect_timeout_seconds + 60, note="")
    except (OSError, TimeoutError, WorkerLost) as exc:
        where = _tried(dask) if dask.address else "a LocalCluster"
        raise ClusterUnusable(f"cannot reach {where}: {exc}") from None
    check(client, request)
    client.register_plugin(daskworker.SetupWorker())
    return client
