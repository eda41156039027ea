"""quantflow.orchestration.taskrunner: what crosses back from a worker is unpickled in the flow's
process, so a library's exception must cross as a quantflow type (real spawned workers)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from quantflow.core.errors import DataError, StepError
from quantflow.orchestration import taskrunner
from quantflow.orchestration.pool import WarmPool

HEAVY = "quantflow_test_heavylib"  # stands for TensorFlow: importing it is what must not happen


def convert() -> None:
    import quantflow_test_heavylib

    raise quantflow_test_heavylib.ConverterError("op CONV_3D [tf.lite.OpsSet.TFLITE_BUILTINS]")


def bad_data() -> None:
    raise DataError("dataset: 1 NaN/Inf input values")


@pytest.fixture
def pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / f"{HEAVY}.py").write_text("class ConverterError(Exception):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # spawned workers get this sys.path
    p = WarmPool(1)
    token = taskrunner._POOL.set(p)
    yield p
    taskrunner._POOL.reset(token)
    p.close()


def test_a_library_error_crosses_as_a_step_error_without_importing_the_library(pool):
    with pytest.raises(StepError) as caught:
        taskrunner.in_worker(convert)
    assert str(caught.value) == ("test_taskrunner failed: ConverterError: op CONV_3D "
                                 "[tf.lite.OpsSet.TFLITE_BUILTINS]")
    assert HEAVY not in sys.modules, "unpickling the error imported the library"
    [note] = caught.value.__notes__
    assert "in the worker process" in note and f"{HEAVY}.ConverterError" in note


def test_quantflows_own_errors_cross_as_they_are(pool):
    with pytest.raises(DataError, match="NaN/Inf"):
        taskrunner.in_worker(bad_data)


def test_without_a_pool_the_step_runs_here_with_the_same_errors():
    with pytest.raises(StepError, match="test_taskrunner failed: ZeroDivisionError"):
        taskrunner.in_worker(lambda: 1 / 0)


def intra_threads() -> int:
    from quantflow.core.tfenv import tf_modules

    tf, _ = tf_modules()
    tf.constant(1.0) + 1.0  # starts the runtime: its pools are sized now
    return tf.config.threading.get_intra_op_parallelism_threads()


@pytest.mark.parametrize("heavy", [True, False])
def test_the_first_step_sizes_its_workers_threads_and_a_reused_worker_keeps_them(heavy):
    import os

    cores = os.cpu_count() or 1
    p = WarmPool(2)
    token = taskrunner._POOL.set(p)
    try:
        first = taskrunner.in_worker(intra_threads, heavy=heavy)
        assert first == (cores if heavy else max(1, cores // 2))
        # Last in, first out: the next step reuses that worker, sized as it already is.
        assert taskrunner.in_worker(intra_threads, heavy=not heavy) == first
        assert len(p.started) == 1
    finally:
        taskrunner._POOL.reset(token)
        p.close()
