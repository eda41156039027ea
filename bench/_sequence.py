"""The order of measurements: each starts from the state it needs (cold, warm, no-op), every
ephemeral cold run before the running server exists, the plain scripts first and last."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import _extras
import _measure
import _profile
import _workspace as wsp
from _bench import OUT, Bench, log, run_plain
from _server import PrefectServer
from _workloads import WORKLOADS, Workload, cold_server_only, variants_for


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
        "plan_run_dvc_seconds": _profile.plan_seconds(b.env, ws, pipeline, ask_dvc=True),
        "noop_importtime": _profile.noop_importtime(b.env, ws, pipeline),
        "loadavg": _measure.loadavg(),
    }


def cold_first(b: Bench, w: Workload, res: dict) -> Path:
    """The plain script, then quantflow's cold run with its own ephemeral server."""
    res["plain_runs"] = [run_plain(b, w, "plain_first", "plain script, first")]
    ws = wsp.create(b.tmp / f"ws-{w.key}", b.spec(w, variants_for(w, b.args.quick)), w.populate)
    if not cold_server_only(w, b.args.quick):
        b.quantflow_run(w, "cold_ephemeral", "cold, ephemeral server", ws, server=False)
    return ws


def with_server(b: Bench, w: Workload, ws: Path, res: dict) -> None:
    """Cold again (running server), then a gate-only change on both servers and a no-op."""
    wsp.reset(ws)
    b.quantflow_run(w, "cold_server", "cold, running server", ws, server=True)
    names = [v["name"] for v in variants_for(w, b.args.quick)]
    res["models"] = _extras.models_of(ws, w.pipeline, names)
    if cold_server_only(w, b.args.quick):
        return
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
