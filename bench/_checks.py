"""The benchmark's results against the issue's targets (#5, #14): one check per target, each
with the measured value, the limit and whether it was met (a miss is reported, never hidden)."""

from __future__ import annotations

from typing import Any

SEED_SIZES = {"float": 84_688, "dynamic_range": 24_096}  # the seeds' reference models (bytes)
GATE_ONLY_MAX = 0.1  # issue #14: every workload, both servers
NOOP_MAX_SECONDS = 1.0
RSS_MAX = 1.5
DROP_LIMITS_PP = {"dynamic_range": 0.2, "float16": 0.2, "int8_fallback": 0.5, "int8": 0.5,
                  "int16x8": 0.5}
QAT_SLACK_PP = 0.3
MATCH_SIZE, MATCH_PP = 0.01, 0.5  # quantflow against the plain script, same model and data


def check(name: str, value: Any, target: str, met: bool | None, note: str = "") -> dict:
    return {"check": name, "value": value, "target": target, "met": met, "note": note}


def _exit_note(run: dict) -> tuple[bool, str]:
    """A run counts when it exited 0, or 3 (every variant gated out: all the work was done,
    only publish was skipped; the --quick MobileNetV2 scores at chance)."""
    rc = run["returncode"]
    note = {0: "", 3: "exit 3: the gate blocked every variant"}.get(rc, f"exit code {rc}")
    return rc in (0, 3), note


def time_checks(key: str, runs: dict[str, dict], plain: dict, running: float,
                ephemeral: float) -> list[dict]:
    """The issue's targets for one workload: cold ratios, gate-only ratio, no-op seconds."""
    wall = plain["wall_seconds"]
    targets = [("cold_server", running, "cold, running server"),
               ("cold_ephemeral", ephemeral, "cold, ephemeral server"),
               ("warm_server", GATE_ONLY_MAX, "gate-only change, running server"),
               ("warm_ephemeral", GATE_ONLY_MAX, "gate-only change, ephemeral server")]
    out = []
    for label, limit, what in targets:
        run = runs.get(f"{key}.{label}")
        if run is None:
            continue
        ratio = run["wall_seconds"] / wall
        counts, note = _exit_note(run)
        out.append(check(f"{key}: time {what}", f"{run['wall_seconds']:.2f} s = {ratio:.2f}x "
                         "plain", f"<= {limit}x", ratio <= limit and counts, note))
    run = runs.get(f"{key}.noop")
    if run:
        tf, pf = run.get("tensorflow_imported"), run.get("prefect_imported")
        ok = run["wall_seconds"] < NOOP_MAX_SECONDS and run["returncode"] == 0 and not tf and not pf
        out.append(check(f"{key}: no-op re-run", f"{run['wall_seconds']:.2f} s",
                         f"< {NOOP_MAX_SECONDS} s, no TensorFlow, no Prefect", ok,
                         f"TensorFlow imported: {tf}; Prefect imported: {pf}; "
                         f"exit {run['returncode']}"))
    return out + rss_checks(key, runs, plain)


def rss_checks(key: str, runs: dict[str, dict], plain: dict) -> list[dict]:
    """Peak RSS of the whole process tree of each cold run against the plain script's; with a
    running server, the server's own peak is added (the run needs it)."""
    out = []
    for label in ("cold_ephemeral", "cold_server"):
        run = runs.get(f"{key}.{label}")
        if run is None:
            continue
        server = run.get("extra_rss_mb") or 0.0
        total = run["peak_rss_mb"] + server
        ratio = total / plain["peak_rss_mb"]
        shown = f"{total:.0f} MB = {ratio:.2f}x plain's {plain['peak_rss_mb']:.0f}"
        note = f"incl. the running server's {server:.0f} MB" if server else "whole tree"
        out.append(check(f"{key}: peak RSS {label.replace('_', ', ')}", shown,
                         f"<= {RSS_MAX}x", ratio <= RSS_MAX, note))
    return out


def match_checks(key: str, models: dict[str, dict], plain_models: dict[str, dict]) -> list[dict]:
    """Same model, data and variants: quantflow's sizes and accuracies beside the plain
    script's, so a reader sees that both did the same work."""
    out = []
    for name, m in models.items():
        pm = plain_models.get(name)
        if not pm or m.get("size_bytes") is None or m.get("accuracy") is None:
            out.append(check(f"{key}: {name} matches the plain script", "missing",
                             f"size within {MATCH_SIZE:.0%}, accuracy within {MATCH_PP} pp",
                             False, m.get("error", "") if isinstance(m, dict) else ""))
            continue
        dev = (m["size_bytes"] - pm["size_bytes"]) / pm["size_bytes"]
        pp = 100 * (m["accuracy"] - pm["accuracy"])
        out.append(check(f"{key}: {name} matches the plain script",
                         f"{m['size_bytes']:,} B ({dev:+.2%}), {m['accuracy']:.4f} ({pp:+.2f} pp)",
                         f"size within {MATCH_SIZE:.0%}, accuracy within {MATCH_PP} pp",
                         abs(dev) <= MATCH_SIZE and abs(pp) <= MATCH_PP + 1e-9))
    return out


def all_checks(res: dict) -> list[dict]:
    from _workloads import WORKLOADS

    out = []
    for key, part in res["workloads"].items():
        w = WORKLOADS[key]
        out += time_checks(key, res["runs"], part["plain"], w.running_target,
                           w.ephemeral_target)
        out += match_checks(key, part.get("models", {}), part["plain"]["script"]["models"])
        if key == "seed_cnn":
            out += quality_checks(part.get("models", {}), part.get("latency", {}),
                                  part.get("chance_demo"))
    return out


def quality_checks(models: dict[str, dict], latency: dict,
                   chance_demo: dict | None) -> list[dict]:
    """Sizes against the seeds', drops against float, QAT, the chance-level guard, latency."""
    out = []
    for name, ref in SEED_SIZES.items():
        size = models.get(name, {}).get("size_bytes")
        dev = None if size is None else (size - ref) / ref
        out.append(check(f"size {name}", f"{size:,} B ({dev:+.2%} vs seeds' {ref:,})"
                         if size else "missing", "within 1%", dev is not None and abs(dev) <= 0.01))
    base = models.get("float", {}).get("accuracy")
    for name, limit in DROP_LIMITS_PP.items():
        acc = models.get(name, {}).get("accuracy")
        drop = None if acc is None or base is None else 100 * (base - acc)
        out.append(check(f"accuracy drop {name}", "missing" if drop is None else f"{drop:+.2f} pp",
                         f"<= {limit} pp", drop is not None and drop <= limit + 1e-9))
    qat = models.get("qat", {}).get("accuracy")
    ok = qat is not None and base is not None and qat >= base - QAT_SLACK_PP / 100 - 1e-9
    out.append(check("QAT accuracy", f"{qat:.4f} vs float {base:.4f}" if ok or qat else "missing",
                     f">= float - {QAT_SLACK_PP} pp", ok))
    if chance_demo:
        out.append(check("gate refuses a chance-level accuracy (the seeds' QAT 0.1006)",
                         chance_demo["reason"], "fails the gate", not chance_demo["passed"]))
    for name in ("float", "int8"):
        pair = latency.get("p50_ms", {}).get(name)
        if pair:
            dev = abs(pair[1] - pair[0]) / pair[0]
            out.append(check(f"latency p50 repeatability {name}",
                             f"{pair[0]:.4f} / {pair[1]:.4f} ms ({dev:+.1%})", "within 10%",
                             dev <= 0.10))
    return out
