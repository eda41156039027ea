"""The benchmark's results as one report: plain text for the terminal, Markdown for
bench/out/results.md (the tables BENCHMARKS.md is made of)."""

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

PHASE_RUNS = ("cold_ephemeral", "cold_server", "warm_server", "warm_ephemeral", "noop")


def _sections(res: dict, md: bool) -> list[tuple[str, str]]:
    t = lambda h, r: fmt_table(h, r, md)  # noqa: E731
    m, plain = res["machine"], res["plain"]
    head = (f"date {res['date']}; {m['nproc']} x {m['cpu']}, {m['memory_gb']} GB; Python "
            f"{m['python']}, TensorFlow {m['tensorflow']}, LiteRT {m['ai-edge-litert']}, Prefect "
            f"{m['prefect']}, DVC {m['dvc']}; data {res['settings']['train_size']} train / "
            f"{res['settings']['test_size']} test; whole benchmark {res['total_seconds']:.0f} s")
    out = [("Benchmark", f"{head}\nquantflow code: {res.get('code', '?')}\n"
                         f"command: {res['command']}")]
    out.append(("Wall time, ratio to the plain script, memory",
                t(TIMING_HEADERS, timing_rows(res["runs"], plain, res["plain_runs"]))
                + f"\n\nPrefect server (already running) started in {res['server_start_seconds']}"
                  f" s; creating its database took {res['prefect_db_create_seconds']} s (once)."))
    out.append(("Targets", t(CHECK_HEADERS, check_rows(res["checks"]))))
    lat = res["latency"]
    loads = ", ".join(f"{r['loadavg']} / CPU {r.get('cpu_busy_percent_before', '?')}% busy"
                      for r in lat.get("runs", []))
    note = (f"latency: {lat.get('threads')} thread(s), {lat.get('warmup_runs')} warm-up + "
            f"{lat.get('timed_runs')} timed single-image invoke() calls; 'p50 rerun' = two fresh "
            f"processes after the run (loads {loads}); int8 / float p50 = "
            f"{lat.get('int8_over_float_p50')}")
    out.append(("Per model (quantflow cold run; plain script beside it)",
                t(VARIANT_HEADERS, variant_rows(res["models"], lat,
                                                plain["script"]["models"])) + "\n\n" + note))
    for label in PHASE_RUNS:
        run = res["runs"].get(label)
        if run:
            rows = [[name, f"{sec:.2f}"] for name, sec in run["phases"]]
            if run.get("max_parallel_quantize") is not None:
                rows.append(["(most quantize tasks running at once, of 2 workers)",
                             str(run["max_parallel_quantize"])])
            steps = ", ".join(f"{k} {v:.2f}" for k, v in run["step_seconds"].items())
            out.append((f"Phases: {run['title']} ({run['wall_seconds']:.2f} s, load "
                        f"{run['loadavg_before']})",
                        t(["phase", "s"], rows) + (f"\n\nsteps (own timers, s): {steps}"
                                                   if steps and label.startswith("cold") else "")))
    for run in res["plain_runs"]:
        ph = ", ".join(f"{k} {v:.2f}" for k, v in run["script"]["phases"].items())
        out.append((f"Phases: {run['title']} ({run['wall_seconds']:.2f} s, load "
                    f"{run['loadavg_before']})", ph))
    sc = [p for p in res["scaling"] if "variants" in p]
    fit = next((p["fit"] for p in res["scaling"] if "fit" in p), "")
    out.append(("Scaling: cold runs with N variants (running server, 2 workers)",
                t(["variants", "wall s", "quantize phase s", "convert+evaluate s (sum)",
                   "most quantize tasks at once", "rest of the run s", "load before"],
                  [[p["variants"], f"{p['wall_seconds']:.2f}", p["quantize_phase_seconds"],
                    p["variant_work_seconds"], p.get("max_parallel_quantize"),
                    p.get("rest_seconds"), p["loadavg_before"]] for p in sc])
                + f"\n\nleast-squares line over these points: {fit}; variants are the first N"
                  f" of {', '.join(v['name'] for v in variants())}"))
    pr = res["profile"]
    rows = [[k, f"{v:.2f}"] for k, v in pr["import_seconds"].items()]
    rows.append(["two worker initializers at once (wall)",
                 f"{pr['two_worker_initializers_wall_seconds']:.2f}"])
    conv = pr.get("first_and_second_conversion_seconds")
    if conv:
        rows.append(["first TFLite conversion in a fresh process (tiny model)", f"{conv[0]:.2f}"])
        rows.append(["second conversion, same process", f"{conv[1]:.2f}"])
    rows.append(["plan_run: spec + in-process dvc status", f"{pr['plan_run_seconds']:.2f}"])
    noop = pr["noop_importtime"]
    top = ", ".join(f"{x['module']} {x['seconds']:.2f}" for x in noop["top_imports"][:8])
    out.append((f"Profile of the fixed costs (load {pr['loadavg']})", t(["what", "s"], rows)
                + f"\n\nno-op under -X importtime: {noop['wall_seconds']:.2f} s, TensorFlow "
                  f"imported: {noop['tensorflow_imported']}, Prefect imported: "
                  f"{noop['prefect_imported']}; costliest top-level imports (s): {top}"))
    return out


def text(res: dict) -> str:
    return "\n\n".join(f"== {title}\n{body}" for title, body in _sections(res, False)) + "\n"


def markdown(res: dict) -> str:
    return "\n\n".join(f"### {title}\n\n{body}" for title, body in _sections(res, True)) + "\n"
