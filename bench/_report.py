"""Tables of the benchmark's results: plain text for the terminal, Markdown for
bench/out/results.md and BENCHMARKS.md."""

from __future__ import annotations

from typing import Any


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
