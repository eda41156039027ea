"""execution.task_runner: dask against a real `dask scheduler` and two `dask worker` processes
on 127.0.0.1 (the shared-filesystem contract: they see tmp_path at the same path), compared
with the process runner on the same four-variant pipeline; and an unreachable scheduler."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from quantflow.cli import app
from quantflow.core.errors import Exit
from tests.tiny import tiny_spec, write_workspace

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DASK = str(Path(sys.executable).with_name("dask"))
VARIANTS = [{"name": "dr", "kind": "dynamic_range"}, {"name": "f16", "kind": "float16"},
            {"name": "i8", "kind": "int8", "io_type": "int8"},
            {"name": "fb", "kind": "int8_float_fallback"}]
# What a runner must not change: the bytes and everything measured from them (not latency).
SAME = ("status", "size_bytes", "sha256", "metric_value", "metric_drop", "drop_low",
        "drop_high", "accuracy", "fidelity", "sanity", "compression_ratio", "tensors")


def quantflow(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)  # a group of its own: its nanny's child too


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGKILL each group (a worker and its nanny): a graceful Dask shutdown takes seconds."""
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def _env(api: str) -> dict[str, str]:
    """This tree first (the venv has /work/main installed editable) and the test's Prefect."""
    path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), "PREFECT_API_URL": api,
            "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture
def cluster(tmp_path, prefect_harness):
    """A scheduler and two single-thread workers, each with its own --local-directory; one
    warms up through --preload, the other through the plugin the flow registers."""
    env, info = _env(prefect_harness), tmp_path / "scheduler.json"
    procs: list[subprocess.Popen] = []
    try:
        procs.append(_start([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0",
                             "--no-dashboard", "--dashboard-address", "127.0.0.1:0",
                             "--scheduler-file", str(info)],
                            tmp_path / "scheduler.log", env))
        deadline = time.monotonic() + 60
        while not info.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(info.read_text())["address"]
        for name, extra in (("w1", ["--preload", "quantflow.orchestration.daskworker"]),
                            ("w2", [])):
            (tmp_path / name).mkdir()
            procs.append(_start([DASK, "worker", address, "--nthreads", "1", "--name", name,
                                 "--host", "127.0.0.1", "--no-dashboard", "--local-directory",
                                 str(tmp_path / name), *extra], tmp_path / f"{name}.log", env))
        yield address
    finally:
        _stop(procs)


def _variant_records(ws: Path) -> dict[str, dict]:
    out = {}
    for v in VARIANTS:
        m = json.loads((ws / "artifacts/tiny/variants" / v["name"] / "metrics.json").read_text())
        out[v["name"]] = {k: m.get(k) for k in SAME}
    return out


def _tensors(ws: Path, variant: str) -> list[tuple]:
    """Every tensor of a .tflite but its name: shape, type, quantization and constant data."""
    from ai_edge_litert.interpreter import Interpreter

    path = ws / "artifacts/tiny" / ("export/float.tflite" if variant == "float"
                                    else f"variants/{variant}/model.tflite")
    interpreter = Interpreter(model_path=str(path))
    out = []
    for t in interpreter.get_tensor_details():
        try:
            data = interpreter.get_tensor(t["index"]).tobytes()
        except ValueError:  # not a constant (no data before a run)
            data = None
        q = t["quantization_parameters"]
        out.append((tuple(t["shape"]), str(t["dtype"]), q["scales"].tobytes(),
                    q["zero_points"].tobytes(), data))
    return out


def test_variants_run_on_both_dask_workers_and_equal_the_process_runner(
        tmp_path, cluster, prefect_harness):
    import distributed
    from distributed.utils import key_split

    spec = tiny_spec(variants=VARIANTS)
    proc_ws, dask_ws = tmp_path / "process", tmp_path / "dask"
    # The process runner's run of the same pipeline, a CLI subprocess at the same time.
    reference = subprocess.Popen(
        [sys.executable, "-m", "quantflow.cli", "run", "--spec",
         str(write_workspace(proc_ws, spec)), "--force"], env=_env(prefect_harness),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        client = distributed.Client(cluster, timeout=30, set_as_default=False)
        try:
            client.wait_for_workers(2, timeout=60)
            workers = {w["name"]: a for a, w in client.scheduler_info()["workers"].items()}
            where = client.run(eval, "__import__('quantflow').__file__")  # a builtin pickles
            assert set(where.values()) == {
                str(ROOT / "quantflow" / "__init__.py")}, "the workers import this tree"
            client.get_task_stream()  # installs the scheduler's task-stream plugin
            start = time.time()
            code, out = quantflow("run", "--spec", str(write_workspace(dask_ws, spec)),
                                  "--force", "--set", "execution.task_runner=dask",
                                  "--set", f"execution.dask.address={cluster}")
            assert code == Exit.OK, out
            stream = client.get_task_stream(start=start)
        finally:
            client.close()
        ref_out, _ = reference.communicate(timeout=300)
    finally:
        reference.kill()
        reference.wait()
    assert reference.returncode == Exit.OK, ref_out
    assert "published version" in out and "published version" in ref_out

    ran: dict[str, list[str]] = {}
    for record in stream:
        ran.setdefault(key_split(record["key"]), []).append(record["worker"])
    assert sorted(ran) == ["export", "prepare", "quantize", "train"], ran
    assert len(ran["quantize"]) == len(VARIANTS)
    assert set(ran["quantize"]) == set(workers.values()), f"both workers ran variants: {ran}"
    assert all(r["status"] == "OK" for r in stream)

    process, dask = _variant_records(proc_ws), _variant_records(dask_ws)
    assert all(r["status"] == "ok" and r["sha256"] for r in dask.values()), dask
    bytes_ = ("size_bytes", "sha256", "compression_ratio")
    assert {v: {k: r[k] for k in SAME if k not in bytes_} for v, r in dask.items()} == \
        {v: {k: r[k] for k in SAME if k not in bytes_} for v, r in process.items()}
    floats = [json.loads((ws / "artifacts/tiny/export/metrics.json").read_text())
              for ws in (proc_ws, dask_ws)]
    # Byte for byte: train clears the Keras session, so the process runner's worker (which
    # built the model once for the deep check) names its layers as a fresh Dask worker does.
    assert floats[0]["sha256"] == floats[1]["sha256"]
    assert dask == process
    for name in ["float", *dask]:
        assert _tensors(proc_ws, name) == _tensors(dask_ws, name), name


def test_unreachable_scheduler_is_one_line_and_exit_2(tmp_path):
    with socket.socket() as s:  # a free port nothing listens on
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    spec = write_workspace(tmp_path / "ws", tiny_spec())
    started = time.monotonic()
    code, out = quantflow("run", "--spec", str(spec), "--set", "execution.task_runner=dask",
                          "--set", f"execution.dask.address={address}",
                          "--set", "execution.dask.connect_timeout_seconds=1")
    assert code == Exit.SPEC, out
    assert time.monotonic() - started < 30
    [line] = [x for x in out.splitlines() if "Dask" in x]
    assert address in line and "tried for 1 s" in line and "refused" in line.lower()
    assert "Prefect" not in out and "Traceback" not in out
    assert sorted(p.name for p in (tmp_path / "ws").iterdir()) == ["pipelines.yaml"]
