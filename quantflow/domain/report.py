"""Gate outputs for people and for DVC: metrics.json, variants.csv and report.md.

metrics.json is a DVC metrics file (flat numbers per model, so `dvc metrics show/diff` reads
well), variants.csv a DVC plot (one row per model) and report.md the human table with every gate
reason. All three are written atomically so a killed run never leaves half a file for DVC.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from quantflow.core.io import write_text
from quantflow.core.results import GateResult, VariantDecision, VariantMetrics
from quantflow.domain import units
from quantflow.domain.gate import drop_of, value_of


def plot_columns(metric: str) -> list[str]:
    """variants.csv's columns: the primary metric under its own name (dvc.yaml's plot y)."""
    return ["name", "kind", units.label(metric), "size_bytes", "latency_p50_ms", "passed"]


PLOT_COLUMNS = plot_columns("accuracy")


def _numbers(m: VariantMetrics) -> dict[str, Any]:
    """The measured numbers of one model, flat and named by the metric and its unit (drops
    positive = worse, in pp for accuracy metrics); unmeasured ones are left out."""
    name, drop = units.label(m.metric), units.drop_key(m.metric, m.percent)
    fid = m.fidelity
    values = {
        "accuracy": m.accuracy,
        name: value_of(m),
        "size_bytes": m.size_bytes,
        "compression_ratio": m.compression_ratio,
        "accuracy_drop_pp": units.scaled(m.accuracy_drop, True),  # the metric's, if accuracy
        drop: units.scaled(drop_of(m), m.percent),
        f"{drop}_low": units.scaled(m.drop_low, m.percent),
        f"{drop}_high": units.scaled(m.drop_high, m.percent),
        "relative_drop": m.relative_drop,
        "agreement_pct": fid.agreement_pct if fid else None,
        "output_rmse": fid.output_rmse if fid else None,
        "sqnr_db": fid.sqnr_db if fid else None,
        "latency_p50_ms": m.latency.p50_ms if m.latency else None,
        "latency_p95_ms": m.latency.p95_ms if m.latency else None,
    }
    return {k: v for k, v in values.items() if v is not None}


def write_metrics(
    baseline: VariantMetrics, variants: list[VariantMetrics], gate: GateResult, path: Path
) -> Path:
    """{"float": {...}, "<variant>": {..., "passed", "selected"}} for `dvc metrics show`."""
    decisions = {d.name: d for d in gate.decisions}
    out: dict[str, dict[str, Any]] = {"float": _numbers(baseline)}
    for m in variants:
        d = decisions.get(m.name)
        out[m.name] = {
            **_numbers(m),
            "passed": bool(d and d.passed),
            "selected": m.name in gate.selected,
        }
    return write_text(path, json.dumps(out, indent=2) + "\n")


def write_plot(
    baseline: VariantMetrics, variants: list[VariantMetrics], gate: GateResult, path: Path
) -> Path:
    """One CSV row per model (float first) so `dvc plots` can draw size against accuracy."""
    passed = {d.name: d.passed for d in gate.decisions}
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(plot_columns(baseline.metric))
    for m in [baseline, *variants]:
        ok = "" if m is baseline else str(passed.get(m.name, False)).lower()
        p50 = m.latency.p50_ms if m.latency else None
        row = [m.name, m.kind, value_of(m), m.size_bytes, p50, ok]
        writer.writerow(["" if v is None else v for v in row])
    return write_text(path, buf.getvalue())


def _cell(value: Any, fmt: str = "{}") -> str:
    """Markdown table cell: '-' when unmeasured, pipes escaped, one line."""
    if value is None:
        return "-"
    text = fmt.format(value) if not isinstance(value, str) else value
    return text.replace("|", "\\|").replace("\n", " ")


def _row(m: VariantMetrics, d: VariantDecision | None) -> str:
    lat, t = m.latency, m.tensors
    gate = "-" if d is None else ("pass" if d.passed else "FAIL")
    cells = [
        m.name,
        m.kind,
        _cell(m.size_bytes, "{:,}"),
        _cell(m.compression_ratio, "{:.2f}x"),
        units.show_value(value_of(m), m.percent),
        _cell(None if drop_of(m) is None else
              units.show_drop(drop_of(m), m.percent, m.drop_low, m.drop_high)),
        _cell(m.fidelity and m.fidelity.agreement_pct, "{:.2f}%"),
        _cell(m.fidelity and m.fidelity.sqnr_db, "{:.1f}"),
        _cell(lat and lat.p50_ms, "{:.3f}"),
        _cell(lat and lat.p95_ms, "{:.3f}"),
        _cell(lat and lat.threads),
        _cell(t and f"{t.input_dtype}/{t.output_dtype}"),
        m.status,
        gate,
    ]
    return "| " + " | ".join(cells) + " |"


def render_report(
    pipeline: str,
    baseline: VariantMetrics,
    variants: list[VariantMetrics],
    gate: GateResult,
    description: str = "",
    extra: list[str] | None = None,
) -> str:
    """The human view: one table of every model, then why each variant passed or failed."""
    decisions = {d.name: d for d in gate.decisions}
    lines = [f"# Quantization report: {pipeline}", ""]
    if description:
        lines += [description, ""]
    name = units.label(baseline.metric)
    unit = " (pp, 95% CI)" if baseline.percent else " (95% CI)"
    lines += [
        f"Task: {baseline.task}; metric: {name}, "
        f"{'higher' if baseline.higher_is_better else 'lower'} is better; drop: positive = "
        "worse than float.",
        "",
        f"| variant | kind | size (bytes) | ratio | {name} | drop{unit} | agreement | SQNR dB "
        "| p50 ms | p95 ms | threads | in/out | status | gate |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
        _row(baseline, None),
        *(_row(m, decisions.get(m.name)) for m in variants),
        "",
        f"**Selected for publishing:** {', '.join(gate.selected) or 'none'}",
        "",
        "## Gate decisions",
        "",
    ]
    for d in gate.decisions:
        lines.append(f"- **{d.name}**: {'passed' if d.passed else 'FAILED'} - {_cell(d.reason)}")
        lines += [f"  - {'ok' if c.passed else 'FAIL'}: {_cell(c.reason)}" for c in d.checks]
    if gate.notes:
        lines += ["", "## What the test set cannot resolve", ""]
        lines += [f"- {_cell(n)}" for n in gate.notes]
    lines += extra or []  # sections of kinds that write more than a model (auto's search)
    failed = [m for m in [baseline, *variants] if m.status == "failed"]
    if failed:
        lines += ["", "## Failed models", ""]
        for m in failed:
            lines += [f"### {m.name} ({m.kind})", "", "```", m.error or "no error recorded", "```"]
    return "\n".join(lines) + "\n"


def write_report(
    pipeline: str,
    baseline: VariantMetrics,
    variants: list[VariantMetrics],
    gate: GateResult,
    path: Path,
    description: str = "",
    extra: list[str] | None = None,
) -> Path:
    """report.md for people reviewing a run (also linked from the publish manifest)."""
    return write_text(path, render_report(pipeline, baseline, variants, gate, description,
                                          extra))
