"""The quantflow benchmark, one command (see BENCHMARKS.md):

    .venv/bin/python bench/run_bench.py            # full run, < 15 minutes on 2 cores
    .venv/bin/python bench/run_bench.py --quick    # smoke run: 2,000/500 images, scaling 1,2

In one run on one machine it measures the plain sequential script (bench/plain_script.py) and
`quantflow run` of the same experiment in throw-away workspaces (git + DVC, dataset read in place
from ../shared/data/mnist): cold with the ephemeral server, cold with an already-running server,
warm after changing only a gate threshold, a no-op re-run (and whether it imported TensorFlow),
the scaling curve over 1/2/4/8 variants, latency repeatability, and the profile of the fixed
costs. Every measurement is recorded with the load average. Results: bench/out/results.json and
bench/out/results.md; the logs of every run: bench/out/logs/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import _measure
import _profile
import _report as rep
import _timeline
import _workspace as wsp
from _server import PrefectServer

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
PY = str(wsp.VENV_BIN / "python")
QUANTFLOW = str(wsp.VENV_BIN / "quantflow")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {_measure.loadavg()}] {msg}", flush=True)


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


def base_env(tmp: Path) -> dict[str, str]:
    """Isolated Prefect home; no inherited API URL; the probe on PYTHONPATH."""
    path = os.pathsep.join(p for p in (str(BENCH / "probe"), os.environ.get("PYTHONPATH")) if p)
    return _measure.clean_env(
        PREFECT_HOME=str(tmp / "prefect-home"), PREFECT_API_URL=None, PYTHONPATH=path,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        # Under load the ephemeral server can take > 20 s (Prefect's default) to answer; a
        # timeout would abort the run instead of measuring it.
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
        PATH=f"{wsp.VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path):
        self.args, self.tmp = args, tmp
        self.env = base_env(tmp)
        self.runs: dict[str, dict] = {}
        self.server: PrefectServer | None = None
        (OUT / "logs").mkdir(parents=True, exist_ok=True)

    def measure(self, label: str, cmd: list[str], cwd: Path, env: dict[str, str],
                title: str = "", server: bool = False) -> tuple[_measure.Measured, dict]:
        probe = self.tmp / f"probe-{label}"
        shutil.rmtree(probe, ignore_errors=True)
        probe.mkdir()
        env = {**env, "QF_BENCH_PROBE_DIR": str(probe)}
        log(f"{label}: {' '.join(cmd[-3:])}")
        extra = self.server.proc.pid if server and self.server and self.server.proc else None
        m = _measure.run(label, cmd, cwd, env, echo=self.args.echo, extra_pid=extra)
        (OUT / "logs" / f"{label}.log").write_text(
            "\n".join(f"{t:8.3f} {s[:3]} {x}" for t, s, x in m.lines) + "\n")
        records = [json.loads(p.read_text()) for p in probe.glob("*.json")]
        res = {**m.summary(), "title": title or label,
               "python_processes_probed": len(records),
               "tensorflow_imported": any("tensorflow" in r["imported"] for r in records),
               "prefect_imported": any("prefect" in r["imported"] for r in records)}
        log(f"{label}: {m.wall_seconds:.2f} s, rc {m.returncode}, peak RSS {m.peak_rss_mb:.0f} MB,"
            f" load after {m.loadavg_after}")
        return m, res

    def quantflow_run(self, label: str, title: str, ws: Path, server: bool) -> dict:
        env = dict(self.env)
        if server:
            env["PREFECT_API_URL"] = self.server.api_url
        m, res = self.measure(label, [QUANTFLOW, "run", wsp.PIPELINE], ws, env, title, server)
        api = None
        flow = _timeline.flow_run_id(m)
        if server and flow:
            try:
                api = _timeline.api_task_runs(self.server.api_url, flow, m.started_epoch)
            except Exception as exc:  # noqa: BLE001 - phases then come from log lines only
                res["api_error"] = f"{type(exc).__name__}: {exc}"
        res["phases"] = _timeline.phases(m, api)
        res["task_runs"] = api
        res["step_seconds"] = _timeline.step_seconds(ws / "artifacts" / wsp.PIPELINE)
        res["max_parallel_quantize"] = _timeline.max_overlap(api)
        self.runs[label] = res
        return res

    def spec(self, n_variants: int) -> dict:
        evaluation = {"threads": self.args.threads} if self.args.threads != 1 else None
        return wsp.pipeline_spec(n_variants, self.args.train_size, self.args.test_size,
                                 None, evaluation)


def run_plain(b: Bench, label: str, title: str) -> dict:
    out = b.tmp / f"{label}.json"
    m, res = b.measure(label, [PY, str(BENCH / "plain_script.py"), "--data", str(wsp.MNIST),
                               "--train-size", str(b.args.train_size), "--test-size",
                               str(b.args.test_size), "--json", str(out)], b.tmp, b.env, title)
    if m.returncode:
        sys.exit(f"plain script failed (exit {m.returncode}); see {OUT / 'logs' / label}.log")
    return {**res, "script": json.loads(out.read_text())}


def models_of(ws: Path) -> dict[str, dict]:
    """Float and variant metrics as quantflow recorded them, with the gate's verdict."""
    art = ws / "artifacts" / wsp.PIPELINE
    found = {"float": json.loads((art / "export" / "metrics.json").read_text())}
    gate = json.loads((art / "gate.json").read_text()) if (art / "gate.json").exists() else {}
    verdict = {d["name"]: ("PASS" if d["passed"] else "FAIL") for d in gate.get("decisions", [])}
    for v in wsp.variants():
        path = art / "variants" / v["name"] / "metrics.json"
        if path.exists():
            found[v["name"]] = {**json.loads(path.read_text()), "gate": verdict.get(v["name"])}
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


def latency_repeat(b: Bench, ws: Path) -> dict:
    """Two consecutive fresh-process latency measurements of every model, with quantflow's code."""
    art = ws / "artifacts" / wsp.PIPELINE
    models = [f"float={art / 'export' / 'float.tflite'}"] + [
        f"{p.parent.name}={p}" for p in sorted((art / "variants").glob("*/model.tflite"))]
    runs = []
    for i in range(2):
        busy = settle()
        load = _measure.loadavg()
        out = subprocess.run([PY, str(BENCH / "_latency.py"), str(ws), wsp.PIPELINE, *models],
                             env=b.env, capture_output=True, text=True)
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


def chance_demo(ws: Path) -> dict:
    """The seeds' broken QAT number (0.1006 on 10 classes) against quantflow's gate with every
    threshold removed: only the built-in chance-level check is left, and it must fail."""
    from quantflow.core.results import VariantMetrics
    from quantflow.core.spec import GateSpec
    from quantflow.core.specload import load_spec
    from quantflow.domain.gate import decide

    spec = load_spec(ws / "pipelines.yaml").spec.pipelines[wsp.PIPELINE]
    permissive = spec.model_copy(update={"gate": GateSpec()})
    art = ws / "artifacts" / wsp.PIPELINE
    baseline = VariantMetrics.read(art / "export" / "metrics.json")
    bad = VariantMetrics(name="qat", kind="qat", accuracy=0.1006, num_classes=10,
                         test_examples=baseline.test_examples, size_bytes=25_000)
    d = next(x for x in decide(wsp.PIPELINE, permissive, baseline, [bad]).decisions
             if x.name == "qat")
    return {"passed": d.passed, "reason": d.reason}


def scaling(b: Bench) -> list[dict]:
    points = []
    for n in b.args.scaling:
        ws = wsp.create(b.tmp / f"scale-{n}", b.spec(n))
        res = b.quantflow_run(f"scale_{n}", f"cold, {n} variant(s), running server", ws, True)
        quantize = next((s for label, s in res["phases"] if label.startswith("tasks quantize")),
                        None)
        steps = res["step_seconds"]
        work = sum(v for k, v in steps.items() if not k.startswith(("float.", "train.")))
        points.append({"variants": n, "wall_seconds": res["wall_seconds"],
                       "quantize_phase_seconds": quantize, "variant_work_seconds": round(work, 3),
                       "rest_seconds": None if quantize is None
                       else round(res["wall_seconds"] - quantize, 3),
                       "max_parallel_quantize": res["max_parallel_quantize"],
                       "loadavg_before": res["loadavg_before"], "returncode": res["returncode"]})
        shutil.rmtree(ws, ignore_errors=True)
    if len(points) >= 2:
        xs, ys = [p["variants"] for p in points], [p["wall_seconds"] for p in points]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / max(
            sum((x - mx) ** 2 for x in xs), 1e-9)
        points.append({"fit": f"wall = {my - slope * mx:.1f} s + {slope:.2f} s x variants"})
    return points


def profile(b: Bench, ws: Path) -> dict:
    log("profile: import times, worker start, DVC plan, no-op import profile")
    return {
        "import_seconds": _profile.import_times(b.env, ws),
        "two_worker_initializers_wall_seconds": _profile.two_workers(b.env, ws),
        "first_and_second_conversion_seconds": _profile.first_conversion(b.env, ws),
        "plan_run_seconds": _profile.plan_seconds(b.env, ws, wsp.PIPELINE),
        "noop_importtime": _profile.noop_importtime(b.env, ws, wsp.PIPELINE),
        "loadavg": _measure.loadavg(),
    }


def sequence(b: Bench) -> dict:
    """Everything, in an order where each measurement starts from the state it needs."""
    res: dict = {"plain_runs": [run_plain(b, "plain_first", "plain script, first")]}
    t0 = time.perf_counter()
    subprocess.run([str(wsp.VENV_BIN / "prefect"), "server", "database", "upgrade", "-y"],
                   env=b.env, capture_output=True, check=True)
    res["prefect_db_create_seconds"] = round(time.perf_counter() - t0, 3)
    ws = wsp.create(b.tmp / "ws", b.spec(len(wsp.repo_pipeline()["variants"])))
    b.quantflow_run("cold_ephemeral", "cold, ephemeral server", ws, server=False)
    b.server = PrefectServer(b.env, OUT / "logs" / "prefect-server.log")
    res["server_start_seconds"] = b.server.start()
    log(f"Prefect server up in {res['server_start_seconds']:.1f} s at {b.server.api_url}")
    wsp.reset(ws)
    b.quantflow_run("cold_server", "cold, running server", ws, server=True)
    res["models"] = models_of(ws)
    res["latency"] = latency_repeat(b, ws)
    res["chance_demo"] = chance_demo(ws)
    res["gate_change"] = [wsp.bump_gate_drop(ws)]
    b.quantflow_run("warm_server", "warm: gate threshold changed, running server", ws, True)
    b.quantflow_run("noop", "no-op re-run", ws, server=True)
    res["gate_change"].append(wsp.bump_gate_drop(ws))
    b.quantflow_run("warm_ephemeral", "warm: gate threshold changed, ephemeral server", ws, False)
    res["profile"] = profile(b, ws)
    res["scaling"] = scaling(b)
    # Measured again at the end; the faster of the two is the reference, so a noisy first
    # measurement cannot make quantflow look better than it is.
    res["plain_runs"].append(run_plain(b, "plain_last", "plain script, last"))
    res["plain"] = min(res["plain_runs"], key=lambda r: r["wall_seconds"])
    return res


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="Smoke run: 2,000/500 images, "
                    "scaling 1 and 2 variants.")
    ap.add_argument("--threads", type=int, default=1, help="Interpreter threads for latency.")
    ap.add_argument("--scaling", type=lambda s: [int(x) for x in s.split(",")],
                    help="Variant counts of the scaling curve (default 1,2,4,8).")
    ap.add_argument("--echo", action="store_true", help="Stream every run's output.")
    ap.add_argument("--keep", action="store_true", help="Keep the temporary workspaces.")
    args = ap.parse_args()
    args.train_size, args.test_size = (2000, 500) if args.quick else (8000, 2000)
    args.scaling = args.scaling or ([1, 2] if args.quick else [1, 2, 4, 8])
    return args


def main() -> None:
    args = parse_args()
    started, version = datetime.now(UTC), code_version()
    tmp = Path(tempfile.mkdtemp(prefix="quantflow-bench-"))
    b = Bench(args, tmp)
    log(f"workspaces in {tmp}; results to {OUT}")
    try:
        res = sequence(b)
    finally:
        if b.server:
            b.server.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    res.update(runs=b.runs, machine=machine(), date=started.isoformat(timespec="seconds"),
               code=version,
               command=" ".join([".venv/bin/python", "bench/run_bench.py", *sys.argv[1:]]),
               settings={k: v for k, v in vars(args).items()},
               total_seconds=round((datetime.now(UTC) - started).total_seconds(), 1))
    res["checks"] = (rep.time_checks(b.runs, res["plain"]["wall_seconds"])
                     + rep.quality_checks(res["models"], res["latency"], res["chance_demo"]))
    (OUT / "results.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    import _render

    (OUT / "results.md").write_text(_render.markdown(res))
    print(_render.text(res))


if __name__ == "__main__":
    main()
