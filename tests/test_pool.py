"""The worker pool with real spawned processes (no TensorFlow: no initializer): a job that kills
its own process or hangs costs that job only, the others finish, and the pool goes on."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import pytest

from quantflow.orchestration.pool import WarmPool, WorkerLost


def add(a: int, b: int) -> int:
    logging.getLogger("quantflow.test").warning("adding %d and %d", a, b)
    return a + b


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def sleep_then(seconds: float, value: str) -> str:
    time.sleep(seconds)
    return value


def fail() -> None:
    raise KeyError("no such thing")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.fixture
def pool():
    p = WarmPool(2)
    yield p
    p.close()
    assert not any(alive(pid) for pid in p.started), "close() left a worker running"


def test_results_errors_and_logs_come_back(pool, caplog):
    caplog.set_level(logging.INFO, logger="quantflow")
    assert pool.run(add, 2, 3) == 5
    assert "adding 2 and 3" in caplog.text, "the worker's log record reached this process"
    with pytest.raises(KeyError, match="no such thing") as info:
        pool.run(fail)
    assert any("in the worker process" in n for n in info.value.__notes__)
    assert pool.run(add, 1, 1) == 2
    assert len(pool.started) == 1, "a job's own exception does not cost its worker"


def test_a_killed_worker_costs_its_job_only(pool):
    pool.prespawn()
    results: dict[str, object] = {}
    other = threading.Thread(target=lambda: results.update(slow=pool.run(sleep_then, 3, "ok")))
    other.start()
    time.sleep(0.5)  # the slow job is running on the other worker
    with pytest.raises(WorkerLost, match="^worker killed by SIGKILL$"):
        pool.run(kill_self)
    other.join()
    assert results == {"slow": "ok"}
    done: list[str] = []
    both = [threading.Thread(target=lambda: done.append(pool.run(sleep_then, 1, "x")))
            for _ in range(2)]
    for t in both:
        t.start()
    for t in both:
        t.join()
    assert done == ["x", "x"]
    assert len(pool.started) == 3, "the dead worker was replaced when two jobs needed two"


def test_a_job_past_its_timeout_is_killed(pool):
    start = time.monotonic()
    with pytest.raises(WorkerLost, match=r"^timed out after 1\.5 s$"):
        pool.run(sleep_then, 600, "never", timeout=1.5)
    assert time.monotonic() - start < 30
    hung = pool.started[0]
    assert not alive(hung), "the hung worker was killed"
    assert pool.run(sleep_then, 0, "next", timeout=30) == "next"


def test_a_worker_that_cannot_start_reports_why():
    p = WarmPool(1, initializer=fail)
    try:
        with pytest.raises(KeyError, match="no such thing"):
            p.run(add, 1, 2)
    finally:
        p.close()
