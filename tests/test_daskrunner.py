"""execution.task_runner / execution.dask in the spec, the runner they choose, the scheduler
check's errors and the Dask side's timeout, without a cluster (tests/integration/test_dask.py
runs a real one)."""

from __future__ import annotations

import contextvars
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from quantflow.core.request import load_request
from quantflow.core.specload import load_spec
from quantflow.orchestration import daskrunner, daskworker
from quantflow.orchestration.pool import WorkerLost
from tests.tiny import tiny_spec, write_workspace

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    return write_workspace(tmp_path / "ws", tiny_spec())


def test_process_is_the_default_and_dask_is_set_with_two_overrides(spec_file):
    assert load_spec(spec_file).spec.execution.task_runner == "process"
    execution = load_spec(spec_file, ["execution.task_runner=dask",
                                      "execution.dask.address=tcp://127.0.0.1:8786"]
                          ).spec.execution
    assert execution.task_runner == "dask"
    assert execution.dask.address == "tcp://127.0.0.1:8786" and execution.dask.local is None
    runner = daskrunner.task_runner(execution.dask)  # built, not connected
    assert runner.address == "tcp://127.0.0.1:8786" and runner._client is None
    assert runner.client_kwargs["timeout"] == 10


def test_a_local_cluster_binds_loopback_on_no_fixed_port(spec_file):
    execution = load_spec(spec_file, ["execution.task_runner=dask",
                                      "execution.dask.local.n_workers=3"]).spec.execution
    assert (execution.dask.local.n_workers, execution.dask.local.threads_per_worker) == (3, 1)
    kwargs = daskrunner.task_runner(execution.dask).cluster_kwargs
    assert kwargs["host"] == "127.0.0.1" and kwargs["scheduler_port"] == 0
    assert kwargs["dashboard_address"] == "127.0.0.1:0" and kwargs["n_workers"] == 3
    assert kwargs["scheduler_kwargs"] == {"dashboard": False}


def test_a_port_that_is_not_a_scheduler_is_named_and_explained(spec_file):
    """A listening socket that never answers Dask's handshake: a real fault, on loopback."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
        request = load_request(spec_file.parent, spec_file.name, [
            "execution.task_runner=dask", f"execution.dask.address={address}",
            "execution.dask.connect_timeout_seconds=0.5"], "tiny")
        with pytest.raises(daskrunner.ClusterUnusable) as caught:
            daskrunner.preflight([request])
    message = str(caught.value)
    assert address in message and "tried for 0.5 s" in message
    assert "accepts connections: is it a Dask scheduler" in message
    assert "\n" not in message


def test_the_timeout_gives_up_on_a_thread_it_cannot_kill():
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(WorkerLost, match=r"timed out after 0.2 s \(on Dask its thread cannot "
                                         r"be killed"):
        daskworker.with_timeout(release.wait, 0.2)
    assert time.monotonic() - started < 5
    release.set()  # the thread it left behind ends


def test_the_step_thread_sees_the_task_context_and_its_errors_come_back():
    var: contextvars.ContextVar[str] = contextvars.ContextVar("run", default="none")
    var.set("task-run-1")
    assert daskworker.with_timeout(var.get, 5) == "task-run-1"
    with pytest.raises(KeyError, match="boom"):
        daskworker.with_timeout(lambda: {}["boom"], 5)


def test_validate_and_the_flow_module_import_no_dask():
    code = ("import sys\nimport flows.quantize\nimport quantflow.orchestration.daskrunner\n"
            "from quantflow.cli import app\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'distributed', 'dask', 'prefect_dask', 'tensorflow'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"


def _lost() -> None:
    raise MemoryError("the worker died")  # what a Dask task that is not a task engine raises


def test_a_dask_task_without_a_prefect_state_ends_failed_not_raising():
    """A real (in-process) Dask cluster; the Dask task fails itself, as KilledWorker does."""
    import uuid

    import distributed

    from quantflow.orchestration.daskfutures import DaskFuture

    with distributed.LocalCluster(n_workers=1, processes=False,  # in-process transport
                                  dashboard_address="127.0.0.1:0",
                                  scheduler_kwargs={"dashboard": False}) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        future = DaskFuture(wrapped_future=client.submit(_lost), task_run_id=uuid.uuid4())
        future.wait()
        assert future.state.is_failed()
        assert future.state.message == "Dask task failed: MemoryError: the worker died"
        assert isinstance(future.result(raise_on_failure=False), MemoryError)
        with pytest.raises(MemoryError):
            future.result()
