"""What the benchmark reads besides wall time: the models quantflow recorded, latency
repeatability, the gate's chance-level guard, and the machine and code measured."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import _measure
import _workspace as wsp

BENCH = Path(__file__).resolve().parent
PY = str(wsp.VENV_BIN / "python")


def machine() -> dict:
    from importlib.metadata import version

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines()
                  if ln.startswith("Model name")), platform.processor())
    mem_kb = int(next(ln.split()[1] for ln in open("/proc/meminfo") if ln.startswith("MemTotal")))
    return {"nproc": os.cpu_count(), "cpu": model, "memory_gb": round(mem_kb / 1024 ** 2, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            **{d: version(d) for d in ("tensorflow", "tf-keras", "ai-edge-litert", "prefect",
                                       "dvc")}}


def code_version() -> str:
    """The commit measured, and whether the working tree had uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=BENCH.parent, capture_output=True,
                              text=True).stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if dirty else "")


def models_of(ws: Path, pipeline: str, names: list[str]) -> dict[str, dict]:
    """Float and variant metrics as quantflow recorded them, with the gate's verdict."""
    art = ws / "artifacts" / pipeline
    found = {"float": json.loads((art / "export" / "metrics.json").read_text())}
    gate = json.loads((art / "gate.json").read_text()) if (art / "gate.json").exists() else {}
    verdict = {d["name"]: ("PASS" if d["passed"] else "FAIL") for d in gate.get("decisions", [])}
    for name in names:
        path = art / "variants" / name / "metrics.json"
        if path.exists():
            found[name] = {**json.loads(path.read_text()), "gate": verdict.get(name)}
    return found


def settle(max_wait: float = 20.0, busy_below: float = 50.0) -> float:
    """Wait (at most ``max_wait`` s) until the CPUs are less than ``busy_below`` % busy over a
    second: right after a run the server still processes its events, and a latency measurement
    lasts only about a second. Returns the last reading, recorded with the measurement."""
    import psutil

    deadline = time.monotonic() + max_wait
    busy = psutil.cpu_percent(interval=1.0)
    while busy >= busy_below and time.monotonic() < deadline:
        busy = psutil.cpu_percent(interval=1.0)
    return busy


def latency_repeat(env: dict[str, str], ws: Path, pipeline: str,
                   log: Callable[[str], None]) -> dict:
    """Two consecutive fresh-process latency measurements of every model, with quantflow's code."""
    art = ws / "artifacts" / pipeline
    models = [f"float={art / 'export' / 'float.tflite'}"] + [
        f"{p.parent.name}={p}" for p in sorted((art / "variants").glob("*/model.tflite"))]
    runs = []
    for i in range(2):
        busy = settle()
        load = _measure.loadavg()
        out = subprocess.run([PY, str(BENCH / "_latency.py"), str(ws), pipeline, *models],
                             env=env, capture_output=True, text=True)
        if out.returncode:
            return {"error": out.stderr[-2000:]}
        runs.append({"loadavg": load, "cpu_busy_percent_before": busy,
                     "models": json.loads(out.stdout.strip().splitlines()[-1])})
        log(f"latency run {i + 1}: float p50 {runs[-1]['models']['float']['p50_ms']:.4f} ms")
    p50 = {n: [r["models"][n]["p50_ms"] for r in runs] for n in runs[0]["models"]}
    ratio = None
    if "int8" in p50:
        ratio = round(p50["int8"][0] / p50["float"][0], 3)
    used = runs[0]["models"]["float"]  # the settings quantflow recorded with the numbers
    return {"threads": used["threads"], "warmup_runs": used["warmup_runs"],
            "timed_runs": used["timed_runs"], "runs": runs, "p50_ms": p50,
            "int8_over_float_p50": ratio}


def chance_demo(ws: Path, pipeline: str) -> dict:
    """The seeds' broken QAT number (0.1006 on 10 classes) against quantflow's gate with every
    threshold removed: only the built-in chance-level check is left, and it must fail."""
    from quantflow.core.results import VariantMetrics
    from quantflow.core.spec import GateSpec
    from quantflow.core.specload import load_spec
    from quantflow.domain.gate import decide

    spec = load_spec(ws / "pipelines.yaml").spec.pipelines[pipeline]
    permissive = spec.model_copy(update={"gate": GateSpec()})
    art = ws / "artifacts" / pipeline
    baseline = VariantMetrics.read(art / "export" / "metrics.json")
    bad = VariantMetrics(name="qat", kind="qat", accuracy=0.1006, num_classes=10,
                         test_examples=baseline.test_examples, size_bytes=25_000)
    d = next(x for x in decide(pipeline, permissive, baseline, [bad]).decisions
             if x.name == "qat")
    return {"passed": d.passed, "reason": d.reason}
