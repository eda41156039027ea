"""quantflow.orchestration.shutdown with real signals sent to this process.

The timer's last resort (``os._exit``) is replaced by a recorder: everything else is real.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from quantflow.core.errors import Exit, Interrupted
from quantflow.orchestration import shutdown


@pytest.fixture
def exits(monkeypatch):
    """What the grace timer (or a second signal) would have ended the process with."""
    seen: list[int] = []
    monkeypatch.setattr(shutdown, "_exit_now", lambda stop: seen.append(stop.code))
    return seen


def _signal_self(sig: int) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.05)  # the handler runs here, in this frame


class _Finalizer:
    def __del__(self) -> None:
        _signal_self(signal.SIGINT)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_signal_swallowed_by_a_finalizer_still_stops_the_run(exits):
    """The reviewer's 1-in-5 case: KeyboardInterrupt raised inside a __del__ is dropped."""
    with shutdown.handle_signals():
        _Finalizer()  # its __del__ gets the signal; the exception it raises is swallowed
        with pytest.raises(Interrupted) as caught:
            shutdown.check()  # what record() and publish do first
    assert caught.value.code == Exit.INTERRUPTED and "SIGINT" in caught.value.message
    assert exits == []


def test_sigterm_raises_with_143_and_handlers_are_restored(exits):
    before = signal.getsignal(signal.SIGTERM)
    with shutdown.handle_signals(), pytest.raises(Interrupted) as caught:
        _signal_self(signal.SIGTERM)
    assert caught.value.code == Exit.TERMINATED
    assert signal.getsignal(signal.SIGTERM) is before
    assert shutdown.requested() is None  # reset for the next run in this process


def test_a_dvc_commit_is_not_cut_in_half(exits):
    done = []
    with shutdown.handle_signals(), pytest.raises(Interrupted):
        with shutdown.deferred():
            _signal_self(signal.SIGINT)
            done.append("commit finished")
    assert done == ["commit finished"]


def test_a_second_signal_ends_the_process_at_once(exits):
    with shutdown.handle_signals(), pytest.raises(Interrupted):
        try:
            _signal_self(signal.SIGINT)
        except Interrupted:
            _signal_self(signal.SIGINT)
            raise
    assert exits == [Exit.INTERRUPTED]


def test_the_timer_ends_a_stuck_clean_path_and_is_disarmed_by_a_finished_one(exits,
                                                                            monkeypatch):
    monkeypatch.setattr(shutdown, "GRACE_SECONDS", 0.3)
    with shutdown.handle_signals():
        with pytest.raises(Interrupted):
            _signal_self(signal.SIGINT)
        time.sleep(0.8)  # stuck inside the run
    assert exits == [Exit.INTERRUPTED]
    with shutdown.handle_signals(), pytest.raises(Interrupted):
        _signal_self(signal.SIGINT)
    time.sleep(0.8)  # out of the run in time: no second exit
    assert exits == [Exit.INTERRUPTED]


def test_request_from_another_thread_wakes_the_main_thread(exits):
    """The server watchdog's path: the main thread is blocked in a wait."""
    with shutdown.handle_signals():
        timer = threading.Timer(0.2, shutdown.request, (Exit.ERROR, "server went away", 5.0))
        timer.start()
        start = time.monotonic()
        with pytest.raises(Interrupted) as caught:
            threading.Event().wait(10)
    assert time.monotonic() - start < 3
    assert (caught.value.code, caught.value.message) == (Exit.ERROR, "server went away")


def test_the_first_signal_kills_the_task_workers(exits):
    """The run's WarmPool: the worker running a job is killed at once, the job gets
    WorkerLost, and the pool starts no other worker after the stop."""
    from quantflow.orchestration.pool import WarmPool, WorkerLost

    pool = WarmPool(2)
    lost: list[BaseException] = []

    def job() -> None:
        try:
            pool.run(time.sleep, 60)
        except WorkerLost as exc:
            lost.append(exc)

    thread = threading.Thread(target=job)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not (pool.started and pool._workers[0].ready):  # the job is on its worker
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with shutdown.handle_signals(), pytest.raises(Interrupted):
            _signal_self(signal.SIGINT)
        thread.join(10)
        assert [str(e) for e in lost] == ["worker killed by SIGKILL"]
        with pytest.raises(WorkerLost, match="the run was stopped"):
            pool.run(time.sleep, 0)
        assert len(pool.started) == 1
    finally:
        pool.close()
