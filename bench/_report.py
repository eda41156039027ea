"""Turn the benchmark's results into checks against the issue's targets and into tables (plain
text for the terminal, Markdown for bench/out/results.md and BENCHMARKS.md)."""

from __future__ import annotations

from typing import Any

SEED_SIZES = {"float": 84_688, "dynamic_range": 24_096}  # the seeds' reference models (bytes)
TIME_TARGETS = [  # (run label, max ratio to the plain script, what it means)
    ("cold_server", 0.8, "cold, already-running server"),
    ("cold_ephemeral", 1.3, "cold, ephemeral server"),
    ("warm_server", 0.25, "warm: gate threshold changed (running server)"),
    ("warm_ephemeral", 0.25, "warm: gate threshold changed (ephemeral server)"),
    ("noop", 0.1, "no-op re-run"),
]
DROP_LIMITS_PP = {"dynamic_range": 0.2, "float16": 0.2, "int8_fallback": 0.5, "int8": 0.5,
                  "int16x8": 0.5}
QAT_SLACK_PP = 0.3


def check(name: str, value: Any, target: str, met: bool | None, note: str = "") -> dict:
    return {"check": name, "value": value, "target": target, "met": met, "note": note}


def time_checks(runs: dict[str, dict], plain_wall: float) -> list[dict]:
    out = []
    for label, limit, what in TIME_TARGETS:
        run = runs.get(label)
        if run is None:
            continue
        ratio = run["wall_seconds"] / plain_wall
        ok = ratio <= limit and run["returncode"] == 0
        note = "" if run["returncode"] == 0 else f"exit code {run['returncode']}"
        if label == "noop":
            tf = run.get("tensorflow_imported")
            ok = ok and tf is False
            note = (note + " " if note else "") + f"TensorFlow imported: {tf}"
        out.append(check(f"time {what}", f"{run['wall_seconds']:.2f} s = {ratio:.2f}x plain",
                         f"<= {limit}x", ok, note))
    return out


def quality_checks(models: dict[str, dict], latency: dict, chance_demo: dict) -> list[dict]:
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


def fmt_table(headers: list[str], rows: list[list[Any]], markdown: bool) -> str:
    cells = [[("-" if c is None else str(c)) for c in r] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in cells]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def timing_rows(runs: dict[str, dict], plain: dict, plain_runs: list[dict]) -> list[list[Any]]:
    """The plain script's runs first (the reference is the faster), then quantflow's runs."""
    rows = []
    for run in plain_runs:
        ref = " (reference)" if run is plain or run["label"] == plain["label"] else ""
        rows.append([run["title"] + ref, f"{run['wall_seconds']:.2f}",
                     f"{run['wall_seconds'] / plain['wall_seconds']:.2f}",
                     f"{run['peak_rss_mb']:.0f}",
                     "-" if run.get("peak_pss_mb") is None else f"{run['peak_pss_mb']:.0f}",
                     _tf(run), run["loadavg_before"]])
    for label, run in runs.items():
        ratio = run["wall_seconds"] / plain["wall_seconds"]
        server = f"+{run['extra_rss_mb']:.0f} server" if run.get("extra_rss_mb") else ""
        rows.append([run.get("title", label), f"{run['wall_seconds']:.2f}", f"{ratio:.2f}",
                     f"{run['peak_rss_mb']:.0f} {server}".strip(),
                     "-" if run.get("peak_pss_mb") is None else f"{run['peak_pss_mb']:.0f}",
                     _tf(run), run["loadavg_before"]])
    return rows


def _tf(run: dict) -> str:
    """Whether any Python process of the run imported TensorFlow (from the exit probe)."""
    n = run.get("python_processes_probed", 0)
    return f"{'yes' if run.get('tensorflow_imported') else 'no'} ({n} processes probed)"


TIMING_HEADERS = ["run", "wall s", "x plain", "peak RSS MB (sum)", "peak PSS MB",
                  "TensorFlow imported", "load before"]
VARIANT_HEADERS = ["model", "kind", "size B", "accuracy", "drop pp", "p50 ms", "p95 ms",
                   "mean ms", "threads", "p50 rerun ms", "plain size B", "plain accuracy", "gate"]


def variant_rows(models: dict[str, dict], latency: dict, plain_models: dict) -> list[list[Any]]:
    base = models.get("float", {}).get("accuracy")
    rows = []
    for name, m in models.items():
        lat = m.get("latency") or {}
        rerun = latency.get("p50_ms", {}).get(name)
        pm = plain_models.get(name, {})
        rows.append([
            name, m.get("kind"), f"{m['size_bytes']:,}" if m.get("size_bytes") else None,
            None if m.get("accuracy") is None else f"{m['accuracy']:.4f}",
            None if m.get("accuracy") is None or base is None
            else f"{100 * (base - m['accuracy']):+.2f}",
            _ms(lat.get("p50_ms")), _ms(lat.get("p95_ms")), _ms(lat.get("mean_ms")),
            lat.get("threads"),
            None if not rerun else f"{_ms(rerun[0])} / {_ms(rerun[1])}",
            f"{pm['size_bytes']:,}" if pm.get("size_bytes") else None,
            None if pm.get("accuracy") is None else f"{pm['accuracy']:.4f}",
            m.get("gate", "reference" if name == "float" else None),
        ])
    return rows


def _ms(v: float | None) -> str | None:
    return None if v is None else f"{v:.4f}"


def check_rows(checks: list[dict]) -> list[list[Any]]:
    mark = {True: "MET", False: "MISSED", None: "n/a"}
    return [[c["check"], c["value"], c["target"], mark[c["met"]], c["note"]] for c in checks]


CHECK_HEADERS = ["check", "measured", "target", "result", "note"]
