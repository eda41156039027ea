"""The benchmark's results as one report: plain text for the terminal, Markdown for
bench/out/results.md (the tables BENCHMARKS.md is made of). One block per workload (its
timings, targets, models, per-variant work and phases), then the seed CNN's scaling curve and
the profile of the fixed costs."""

from __future__ import annotations

from _report import (
    CHECK_HEADERS,
    TIMING_HEADERS,
    VARIANT_HEADERS,
    check_rows,
    fmt_table,
    timing_rows,
    variant_rows,
)
from _workspace import variants

MATCH = "matches the plain script"
PHASE_RUNS = ("cold_ephemeral", "cold_server", "warm_server", "warm_ephemeral", "noop")


def _head(res: dict) -> tuple[str, str]:
    m = res["machine"]
    return ("Benchmark", f"date {res['date']}; {m['nproc']} x {m['cpu']}, {m['memory_gb']} GB; "
            f"Python {m['python']}, TensorFlow {m['tensorflow']}, LiteRT {m['ai-edge-litert']}, "
            f"Prefect {m['prefect']}, DVC {m['dvc']}; whole benchmark {res['total_seconds']:.0f}"
            f" s\nquantflow code: {res.get('code', '?')} ({res.get('quantflow_code', '?')})\n"
            f"command: {res['command']}\nPrefect server (already running) started in "
            f"{res['server_start_seconds']} s; creating its database took "
            f"{res['prefect_db_create_seconds']} s (once).")


def _variant_work(key: str, part: dict, runs: dict) -> tuple[list[str], list[list]]:
    """Per model: when its task ran (running server, from the API) and what its step timed."""
    cold, eph = runs.get(f"{key}.cold_server", {}), runs.get(f"{key}.cold_ephemeral", {})
    api = cold.get("task_runs") or {}
    rows = []
    for name in part.get("models", {}):
        task = api.get("export" if name == "float" else f"quantize-{name}", {})
        s, e = cold.get("step_seconds", {}), eph.get("step_seconds", {})
        rows.append([name, task.get("start"), task.get("end"),
                     None if not task else f"{task['end'] - task['start']:.2f}",
                     s.get(f"{name}.convert"), s.get(f"{name}.evaluate"),
                     e.get(f"{name}.convert"), e.get(f"{name}.evaluate")])
    return (["model", "task start s", "task end s", "task s", "convert s", "evaluate s",
             "convert s (ephemeral run)", "evaluate s (ephemeral run)"], rows)


def _role(name: str) -> str:
    """A process's name as a reader knows it (python -c lines are long and multi-line)."""
    pid = name.split(" ", 1)[0]
    if "spawn_main" in name:
        return f"{pid} worker"
    if "ctypes" in name or "prefect" in name and "server" in name:
        return f"{pid} Prefect server"
    return " ".join(name.split())[:40]


def _who_holds_memory(key: str, runs: dict) -> str:
    """Each cold run's processes (>= 20 MB) with their own peak RSS: the sum's make-up."""
    out = ""
    for label in ("cold_ephemeral", "cold_server"):
        each = runs.get(f"{key}.{label}", {}).get("peak_rss_each_mb")
        if each:
            out += f"\n{label} peak RSS by process (MB, pid name): " + ", ".join(
                f"{_role(k)} {v:.0f}" for k, v in each.items())
    return out


def _workload(key: str, part: dict, res: dict, md: bool) -> list[tuple[str, str]]:
    t = lambda h, r: fmt_table(h, r, md)  # noqa: E731
    runs = {k: v for k, v in res["runs"].items()
            if v.get("workload") == key and not v.get("run", "").startswith("scale_")}
    plain, title = part["plain"], part["title"]
    script = plain["script"]
    out = [(f"{title}: wall time, ratio to the plain script, memory",
            t(TIMING_HEADERS, timing_rows(runs, plain, part["plain_runs"]))
            + f"\n\ndata {script['train_size']} train / {script['test_size']} test images"
            + _who_holds_memory(key, runs))]
    out.append((f"{title}: quantflow's models against the plain script's", t(
        CHECK_HEADERS, check_rows([c for c in res["checks"]
                                   if c["check"].startswith(f"{key}:")
                                   and c["check"].endswith(MATCH)]))))
    lat = part.get("latency") or {}
    out.append((f"{title}: per model (quantflow cold run, running server; plain script beside)",
                t(VARIANT_HEADERS, variant_rows(part.get("models", {}), lat, script["models"]))))
    headers, rows = _variant_work(key, part, res["runs"])
    train = runs.get(f"{key}.cold_server", {}).get("step_seconds", {}).get("train.fit")
    out.append((f"{title}: where each model's time goes (cold runs; seconds since start)",
                t(headers, rows) + f"\n\ntrain.fit {train} s; QAT's convert s includes its "
                "fine-tuning epoch"))
    for label in PHASE_RUNS:
        run = runs.get(f"{key}.{label}")
        if run:
            rows = [[name, f"{sec:.2f}"] for name, sec in run["phases"]]
            if run.get("max_parallel_quantize") is not None:
                rows.append(["(most quantize tasks running at once, of 2 workers)",
                             str(run["max_parallel_quantize"])])
            out.append((f"{title}: phases of {run['title']} ({run['wall_seconds']:.2f} s, load "
                        f"{run['loadavg_before']})", t(["phase", "s"], rows)))
    for run in part["plain_runs"]:
        ph = ", ".join(f"{k} {v:.2f}" for k, v in run["script"]["phases"].items())
        out.append((f"{title}: phases of the {run['title']} ({run['wall_seconds']:.2f} s, load "
                    f"{run['loadavg_before']})", ph))
    return out


def _seed_extras(res: dict, md: bool) -> list[tuple[str, str]]:
    t = lambda h, r: fmt_table(h, r, md)  # noqa: E731
    out = []
    other = [c for c in res["checks"] if ":" not in c["check"].split(" ")[0]]
    if other:
        out.append(("seed CNN: sizes, drops, QAT, chance guard, latency repeatability",
                    t(CHECK_HEADERS, check_rows(other))))
    sc = [p for p in res.get("scaling", []) if "variants" in p]
    if sc:
        fit = next((p["fit"] for p in res["scaling"] if "fit" in p), "")
        out.append(("Scaling: seed CNN cold runs with N variants (running server, 2 workers)",
                    t(["variants", "wall s", "quantize phase s", "convert+evaluate s (sum)",
                       "most quantize tasks at once", "rest of the run s", "load before"],
                      [[p["variants"], f"{p['wall_seconds']:.2f}", p["quantize_phase_seconds"],
                        p["variant_work_seconds"], p.get("max_parallel_quantize"),
                        p.get("rest_seconds"), p["loadavg_before"]] for p in sc])
                    + f"\n\nleast-squares line over these points: {fit}; variants are the "
                      f"first N of {', '.join(v['name'] for v in variants())}"))
    pr = res.get("profile")
    if pr:
        rows = [[k, f"{v:.2f}"] for k, v in pr["import_seconds"].items()]
        rows.append(["two worker initializers at once (wall)",
                     f"{pr['two_worker_initializers_wall_seconds']:.2f}"])
        conv = pr.get("first_and_second_conversion_seconds")
        if conv:
            rows.append(["first TFLite conversion in a fresh process (tiny model)",
                         f"{conv[0]:.2f}"])
            rows.append(["second conversion, same process", f"{conv[1]:.2f}"])
        rows.append(["plan_run, up to date: spec + DVC's remembered verdict (cleanmark)",
                     f"{pr['plan_run_seconds']:.2f}"])
        if "plan_run_dvc_seconds" in pr:
            rows.append(["plan_run, up to date, verdict forgotten: spec + in-process dvc status",
                         f"{pr['plan_run_dvc_seconds']:.2f}"])
        noop = pr["noop_importtime"]
        top = ", ".join(f"{x['module']} {x['seconds']:.2f}" for x in noop["top_imports"][:8])
        out.append((f"Profile of the fixed costs (load {pr['loadavg']})", t(["what", "s"], rows)
                    + f"\n\nno-op under -X importtime: {noop['wall_seconds']:.2f} s, TensorFlow "
                      f"imported: {noop['tensorflow_imported']}, Prefect imported: "
                      f"{noop['prefect_imported']}; costliest top-level imports (s): {top}"))
    return out


def _sections(res: dict, md: bool) -> list[tuple[str, str]]:
    out = [_head(res)]
    summary = [c for c in res["checks"] if ":" in c["check"].split(" ")[0]
               and not c["check"].endswith(MATCH)]
    out.append(("Targets (issue #14), every workload",
                fmt_table(CHECK_HEADERS, check_rows(summary), md)))
    for key, part in res["workloads"].items():
        out += _workload(key, part, res, md)
    return out + _seed_extras(res, md)


def text(res: dict) -> str:
    return "\n\n".join(f"== {title}\n{body}" for title, body in _sections(res, False)) + "\n"


def markdown(res: dict) -> str:
    return "\n\n".join(f"### {title}\n\n{body}" for title, body in _sections(res, True)) + "\n"
