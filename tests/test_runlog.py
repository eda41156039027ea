"""The run log and the terminal rules (quantflow.orchestration.runlog)."""

from __future__ import annotations

import logging
import os
import sys

from quantflow.orchestration import runlog

CONVERTER = (  # the shape of a real ConverterError (TF 2.21, a SimpleRNN model)
    "ConverterError: /x/int8.py:25:1: error: 'tf.TensorListReserve' op requires element_shape"
    " to be static during TF Lite transformation pass\n"
    "            converter.convert()\n^\n/x/int8.py:25:1: note: called from\n"
    '<unknown>:0: note: loc(fused["StatefulPartitionedCall:", "StatefulPartitionedCall"]): '
    "called from\n<unknown>:0: error: Lowering tensor list ops is failed. For example, "
    "converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, "
    "tf.lite.OpsSet.SELECT_TF_OPS]\\n converter._experimental_lower_tensor_list_ops = False\n")


def test_one_line_drops_mlir_locations_inside_the_error_lines():
    """The same converter error as some TF builds print it: ``error: loc(...): text``."""
    loc = ('loc(callsite(fused["TensorListReserve:", "sequential/simple_rnn/TensorArrayV2_1"] '
           'at fused["StatefulPartitionedCall:", "StatefulPartitionedCall"]))')
    text = (f"ConverterError: error: {loc}: 'tf.TensorListReserve' op requires element_shape\n"
            f"note: called from\nerror: {loc}: failed to legalize operation\n"
            "error: Lowering tensor list ops is failed. For example, converter.target_spec."
            "supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]\n")
    assert runlog.one_line("export failed: " + text) == (
        "export failed: ConverterError: error: 'tf.TensorListReserve' op requires element_shape"
        " | error: failed to legalize operation | error: Lowering tensor list ops is failed. "
        "For example, converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, "
        "tf.lite.OpsSet.SELECT_TF_OPS]")
    assert runlog.one_line("error: loc(unbalanced: x") == "error: loc(unbalanced: x"


def test_one_line_keeps_the_converters_errors_and_drops_locations_and_notes():
    line = runlog.one_line(CONVERTER)
    assert "\n" not in line
    assert line == ("ConverterError: error: 'tf.TensorListReserve' op requires element_shape "
                    "to be static during TF Lite transformation pass | error: Lowering tensor "
                    "list ops is failed. For example, converter.target_spec.supported_ops = "
                    "[tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]\\n "
                    "converter._experimental_lower_tensor_list_ops = False")
    assert runlog.one_line("export failed: " + CONVERTER).startswith(
        "export failed: ConverterError: error: 'tf.TensorListReserve'")
    assert runlog.one_line("first\n\n  second  \n") == "first | second"
    assert len(runlog.one_line("x" * 5000)) == 1000


def _record(module: str, level: int, message: str, exc: bool = False) -> logging.LogRecord:
    try:
        raise ValueError("boom")
    except ValueError:
        info = sys.exc_info() if exc else None
    return logging.LogRecord("prefect.task_runs", level, f"/p/prefect/{module}.py", 1, message,
                             None, info)


def test_the_terminal_skips_prefects_repeats_of_a_failure_and_every_traceback():
    keep = runlog._for_terminal
    assert not keep(_record("task_engine", logging.ERROR, "Task run failed with exception"))
    assert not keep(_record("flow_engine", logging.INFO, "Finished in state Failed('x')"))
    assert not keep(_record("flow_engine", logging.INFO, "Finished in state Crashed('x')"))
    assert keep(_record("task_engine", logging.INFO, "Finished in state Completed()"))
    assert keep(_record("__init__", logging.ERROR, "quantize tiny/a16 failed: [x] (log: l)"))

    record = _record("__init__", logging.ERROR, "quantize failed", exc=True)
    console = runlog._NoTraceback(logging.Formatter("%(message)s"))
    assert console.format(record) == "quantize failed"
    assert "Traceback" in logging.Formatter("%(message)s").format(record)  # the file's view


def test_run_log_is_one_new_file_per_run_and_the_oldest_go(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    logs = tmp_path / "artifacts" / "p" / "logs"
    logs.mkdir(parents=True)
    for i in range(runlog.KEEP + 3):
        (logs / f"run-2020010{i:02d}.log").write_text("old")
    with runlog.run_log(logs) as path:
        assert os.environ[runlog.ENV] == str(path)
        assert runlog.where() == f" (log: artifacts/p/logs/{path.name})"
        logging.getLogger("quantflow.runlog").error("kept in the file")
    assert runlog.ENV not in os.environ and runlog.where() == ""
    assert runlog.where(last=True).endswith(f"{path.name})")
    assert "kept in the file" in path.read_text()
    assert len(list(logs.glob("run-*.log"))) == runlog.KEEP


def route_only() -> None:
    """warm_worker without TensorFlow: what it does to a worker's output."""
    from quantflow.orchestration import shutdown

    shutdown.ignore_interrupts()
    runlog.route_worker_output()


def noisy() -> str:
    """A step's job that prints as TensorFlow and the converter do, and logs as a step does."""
    os.write(2, b"E0000 cuda_platform.cc:52] failed call to cuInit\n")
    print("fully_quantize: 0", flush=True)
    logging.getLogger("absl").warning("XNNPACK delegate created")
    log = logging.getLogger("quantflow.steps.quantize")
    log.warning("quantize tiny/a16 failed: [tf.lite.OpsSet.TFLITE_BUILTINS]")
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        log.exception("with a traceback")
    return "done"


def test_a_worker_files_its_noise_and_sends_its_log_lines_to_the_run(tmp_path, monkeypatch,
                                                                     capfd, caplog):
    """What `warm_worker` does in every task worker of a WarmPool, in a real process: fd 1
    and 2 go to the run log; quantflow's records come up the pipe, the traceback apart."""
    from quantflow.orchestration.pool import WarmPool

    log = tmp_path / "run.log"
    monkeypatch.setenv(runlog.ENV, str(log))
    caplog.set_level(logging.INFO, logger="quantflow")
    pool = WarmPool(1, initializer=route_only)
    try:
        assert pool.run(noisy) == "done"
    finally:
        pool.close()
    terminal = "".join(capfd.readouterr())
    for hidden in ("cuInit", "fully_quantize", "XNNPACK", "Traceback"):
        assert hidden not in terminal, terminal
    text = log.read_text()
    for kept in ("cuInit", "fully_quantize", "XNNPACK"):
        assert kept in text, text
    [failed, traced] = [r for r in caplog.records if r.name == "quantflow.steps.quantize"]
    assert failed.getMessage() == "quantize tiny/a16 failed: [tf.lite.OpsSet.TFLITE_BUILTINS]"
    assert traced.getMessage() == "with a traceback"  # the file's formatter adds exc_text
    assert "ZeroDivisionError" in traced.exc_text and "Traceback" in traced.exc_text
