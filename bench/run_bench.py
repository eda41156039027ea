"""The quantflow benchmark, one command (see BENCHMARKS.md):

    python bench/run_bench.py            # full run: both workloads, scaling, profile
    python bench/run_bench.py --quick    # smoke run, < 5 minutes on a quiet 2-core machine

In one run on one machine it measures, for each workload (bench/_workloads.py: the seed CNN of
pipelines.yaml `mnist`, and a MobileNetV2 brought as a builder file with its data as an .npz),
its plain sequential script and `quantflow run` of the same experiment in throw-away
workspaces (git + DVC): cold with the ephemeral server, cold with an already-running server,
warm after changing only a gate threshold (both servers), a no-op re-run (and whether it
imported TensorFlow or Prefect), peak RSS of the whole process tree; for the seed CNN also the
scaling curve over 1/2/4/8 variants, latency repeatability and the profile of the fixed costs.
Every measurement is recorded with the load average. Results: bench/out/results.json and
bench/out/results.md; the logs of every run: bench/out/logs/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import _checks
import _extras
import _measure
import _profile
import _timeline
import _workspace as wsp
from _server import PrefectServer
from _workloads import WORKLOADS, Workload, sizes, variants_for

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
PY = str(wsp.VENV_BIN / "python")
QUANTFLOW = str(wsp.VENV_BIN / "quantflow")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {_measure.loadavg()}] {msg}", flush=True)


def base_env(tmp: Path) -> dict[str, str]:
    """Isolated Prefect home; no inherited API URL; the probe on PYTHONPATH, then this tree
    (so every `quantflow` process runs the code beside this benchmark, not whatever the venv's
    editable install points at)."""
    path = os.pathsep.join(p for p in (str(BENCH / "probe"), str(BENCH.parent),
                                        os.environ.get("PYTHONPATH")) if p)
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

    def quantflow_run(self, w: Workload, label: str, title: str, ws: Path, server: bool) -> dict:
        env = dict(self.env)
        if server:
            env["PREFECT_API_URL"] = self.server.api_url
        key = f"{w.key}.{label}"
        m, res = self.measure(key, [QUANTFLOW, "run", w.pipeline], ws, env, title, server)
        api = None
        flow = _timeline.flow_run_id(m)
        if server and flow:
            try:
                api = _timeline.api_task_runs(self.server.api_url, flow, m.started_epoch)
            except Exception as exc:  # noqa: BLE001 - phases then come from log lines only
                res["api_error"] = f"{type(exc).__name__}: {exc}"
        res.update(workload=w.key, run=label, phases=_timeline.phases(m, api), task_runs=api,
                   step_seconds=_timeline.step_seconds(ws / "artifacts" / w.pipeline),
                   max_parallel_quantize=_timeline.max_overlap(api))
        self.runs[key] = res
        return res

    def sizes(self, w: Workload) -> tuple[int, int]:
        return sizes(w, self.args.quick)

    def spec(self, w: Workload, variants: list[dict]) -> dict:
        evaluation = {"threads": self.args.threads} if self.args.threads != 1 else None
        return w.spec(variants, *self.sizes(w), evaluation)


def run_plain(b: Bench, w: Workload, label: str, title: str) -> dict:
    key = f"{w.key}.{label}"
    out = b.tmp / f"{key}.json"
    cmd = w.plain_cmd(PY, variants_for(w, b.args.quick), *b.sizes(w), out)
    m, res = b.measure(key, cmd, b.tmp, b.env, title)
    if m.returncode:
        sys.exit(f"plain script failed (exit {m.returncode}); see {OUT / 'logs' / key}.log")
    return {**res, "script": json.loads(out.read_text())}


def scaling(b: Bench, w: Workload) -> list[dict]:
    points = []
    for n in b.args.scaling:
        ws = wsp.create(b.tmp / f"scale-{n}", b.spec(w, wsp.variants()[:n]))
        res = b.quantflow_run(w, f"scale_{n}", f"cold, {n} variant(s), running server", ws, True)
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


def profile(b: Bench, ws: Path, pipeline: str) -> dict:
    log("profile: import times, worker start, DVC plan, no-op import profile")
    return {
        "import_seconds": _profile.import_times(b.env, ws),
        "two_worker_initializers_wall_seconds": _profile.two_workers(b.env, ws),
        "first_and_second_conversion_seconds": _profile.first_conversion(b.env, ws),
        "plan_run_seconds": _profile.plan_seconds(b.env, ws, pipeline),
        "noop_importtime": _profile.noop_importtime(b.env, ws, pipeline),
        "loadavg": _measure.loadavg(),
    }


def cold_first(b: Bench, w: Workload, res: dict) -> Path:
    """The plain script, then quantflow's cold run with its own ephemeral server."""
    res["plain_runs"] = [run_plain(b, w, "plain_first", "plain script, first")]
    ws = wsp.create(b.tmp / f"ws-{w.key}", b.spec(w, variants_for(w, b.args.quick)), w.populate)
    b.quantflow_run(w, "cold_ephemeral", "cold, ephemeral server", ws, server=False)
    return ws


def with_server(b: Bench, w: Workload, ws: Path, res: dict) -> None:
    """Cold again (running server), then a gate-only change on both servers and a no-op."""
    wsp.reset(ws)
    b.quantflow_run(w, "cold_server", "cold, running server", ws, server=True)
    names = [v["name"] for v in variants_for(w, b.args.quick)]
    res["models"] = _extras.models_of(ws, w.pipeline, names)
    if w.key == "seed_cnn" and not b.args.quick:
        res["latency"] = _extras.latency_repeat(b.env, ws, w.pipeline, log)
        res["chance_demo"] = _extras.chance_demo(ws, w.pipeline)
    res["gate_change"] = [wsp.bump_gate_drop(ws, w.pipeline)]
    b.quantflow_run(w, "warm_server", "warm: gate threshold changed, running server", ws, True)
    b.quantflow_run(w, "noop", "no-op re-run", ws, server=True)
    res["gate_change"].append(wsp.bump_gate_drop(ws, w.pipeline))
    b.quantflow_run(w, "warm_ephemeral", "warm: gate threshold changed, ephemeral server", ws,
                    False)


def sequence(b: Bench) -> dict:
    """Everything, in an order where each measurement starts from the state it needs: every
    ephemeral cold run before the running server exists (it would compete for the cores)."""
    workloads = [WORKLOADS[k] for k in b.args.workloads]
    res: dict = {"workloads": {w.key: {"title": w.title} for w in workloads}}
    t0 = time.perf_counter()
    subprocess.run([str(wsp.VENV_BIN / "prefect"), "server", "database", "upgrade", "-y"],
                   env=b.env, capture_output=True, check=True)
    res["prefect_db_create_seconds"] = round(time.perf_counter() - t0, 3)
    spaces = {w.key: cold_first(b, w, res["workloads"][w.key]) for w in workloads}
    b.server = PrefectServer(b.env, OUT / "logs" / "prefect-server.log")
    res["server_start_seconds"] = b.server.start()
    log(f"Prefect server up in {res['server_start_seconds']:.1f} s at {b.server.api_url}")
    for w in workloads:
        with_server(b, w, spaces[w.key], res["workloads"][w.key])
    seed = WORKLOADS["seed_cnn"]
    if not b.args.quick and seed in workloads:
        res["profile"] = profile(b, spaces[seed.key], seed.pipeline)
        res["scaling"] = scaling(b, seed)
    for w in workloads:
        part = res["workloads"][w.key]
        # Measured again at the end (full runs); the faster is the reference, so a noisy first
        # measurement cannot make quantflow look better than it is.
        if not (b.args.quick or b.args.plain_once):
            part["plain_runs"].append(run_plain(b, w, "plain_last", "plain script, last"))
        part["plain"] = min(part["plain_runs"], key=lambda r: r["wall_seconds"])
    return res


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="Smoke run: 2,000/500 images; "
                    "MobileNetV2 with 2 variants (dynamic_range, int8; no QAT); the plain "
                    "scripts once; no latency repeat, profile or scaling.")
    ap.add_argument("--workloads", type=lambda s: s.split(","), default=list(WORKLOADS),
                    help=f"Comma-separated, of {', '.join(WORKLOADS)} (default: both).")
    ap.add_argument("--threads", type=int, default=1, help="Interpreter threads for latency.")
    ap.add_argument("--scaling", type=lambda s: [int(x) for x in s.split(",")],
                    help="Variant counts of the seed CNN's scaling curve (default 1,2,4,8).")
    ap.add_argument("--plain-once", action="store_true", help="Run each plain script once, "
                    "not first and last (a shorter full run; the reference is then noisier).")
    ap.add_argument("--echo", action="store_true", help="Stream every run's output.")
    ap.add_argument("--keep", action="store_true", help="Keep the temporary workspaces.")
    ap.add_argument("--render", type=Path, metavar="RESULTS_JSON",
                    help="Measure nothing: recompute the checks and tables of a results.json.")
    args = ap.parse_args()
    unknown = [k for k in args.workloads if k not in WORKLOADS]
    if unknown:
        ap.error(f"unknown workload(s) {unknown}; known: {', '.join(WORKLOADS)}")
    args.scaling = args.scaling or [1, 2, 4, 8]
    return args


def quantflow_code(env: dict[str, str]) -> str:
    """Where the measured `quantflow` processes import quantflow from."""
    out = subprocess.run([PY, "-c", "import quantflow; print(quantflow.__file__)"], env=env,
                         capture_output=True, text=True)
    return out.stdout.strip() or out.stderr.strip()[-300:]


def report(res: dict) -> None:
    """Checks and tables from the raw results, which are on disk first: a bug here must not
    cost the measurements (re-run with --render bench/out/results.json)."""
    import _render

    res["checks"] = _checks.all_checks(res)
    (OUT / "results.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (OUT / "results.md").write_text(_render.markdown(res))
    print(_render.text(res))


def main() -> None:
    args = parse_args()
    if args.render:
        return report(json.loads(args.render.read_text()))
    started, version = datetime.now(UTC), _extras.code_version()
    tmp = Path(tempfile.mkdtemp(prefix="quantflow-bench-"))
    b = Bench(args, tmp)
    log(f"workspaces in {tmp}; results to {OUT}; quantflow from {quantflow_code(b.env)}")
    try:
        res = sequence(b)
    except BaseException:
        # What was measured before the failure is kept for a look, not for a report.
        (OUT / "results.partial.json").write_text(json.dumps(b.runs, indent=2, default=str))
        raise
    finally:
        if b.server:
            b.server.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    res.update(runs=b.runs, machine=_extras.machine(), code=version,
               quantflow_code=quantflow_code(b.env),
               date=started.isoformat(timespec="seconds"),
               command=" ".join(["python", "bench/run_bench.py", *sys.argv[1:]]),
               settings={k: v for k, v in vars(args).items()},
               total_seconds=round((datetime.now(UTC) - started).total_seconds(), 1))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    report(res)


if __name__ == "__main__":
    main()
