"""gate: decide every variant against its thresholds; write metrics, plot data and report."""

from __future__ import annotations

from typing import Any

from quantflow.core.request import StepContext
from quantflow.core.results import GateResult, VariantMetrics
from quantflow.domain import autoreport, report, report_page, units
from quantflow.domain.gate import decide, drop_of, value_of

# strategy and objective (publish) pick what gets selected.
READS = ("description", "gate", "variants.*.gate", "publish")


def load_metrics(ctx: StepContext, failed: dict[str, str] | None = None) \
        -> tuple[VariantMetrics, list[VariantMetrics]]:
    """Baseline metrics and one record per variant. A variant in ``failed`` (the flow saw its
    step fail this run) or without a metrics file (its step never finished) is failed, whatever
    an older file of it may say: a step that did not finish must not pass for one that did."""
    p, failed = ctx.paths, failed or {}
    baseline = VariantMetrics.read(p.baseline_metrics)
    found = []
    for v in ctx.pipeline.variants:
        path = p.variant_metrics(v.name)
        m = VariantMetrics.read(path) if path.exists() else None
        if m is None or v.name in failed:
            error = failed.get(v.name, f"no {path.name}: its quantize step did not finish")
            m = VariantMetrics(name=v.name, kind=m.kind if m else "quantize", status="failed",
                               error=error)
        found.append(m)
    return baseline, found


def gate(ctx: StepContext, failed: dict[str, str] | None = None) -> GateResult:
    p = ctx.paths
    baseline, variants = load_metrics(ctx, failed)
    result = decide(ctx.name, ctx.pipeline, baseline, variants)
    result.write(p.gate)
    report.write_metrics(baseline, variants, result, p.metrics)
    report.write_plot(baseline, variants, result, p.plot)
    extra = [line for v in ctx.pipeline.variants
             for line in autoreport.section(v.name, p.variant_dir(v.name))]
    report.write_report(ctx.name, baseline, variants, result, p.report,
                        description=ctx.pipeline.description, extra=extra)
    report_page.for_gate(ctx)  # report.html and latency.csv
    return result


def table_rows(ctx: StepContext) -> list[dict[str, Any]]:
    """One row per model for the Prefect table artifact and the CLI summary."""
    baseline, variants = load_metrics(ctx)
    result = GateResult.read(ctx.paths.gate)
    decisions = {d.name: d for d in result.decisions}
    rows = []
    for m in [baseline, *variants]:
        d = decisions.get(m.name)
        name, drop = units.label(m.metric), units.drop_key(m.metric, m.percent)
        value, fid = units.scaled(value_of(m), m.percent), m.fidelity
        rows.append({
            "variant": m.name, "kind": m.kind, "status": m.status,
            "metric": name,
            "value": None if value is None else round(value, 4),
            "unit": "%" if m.percent else "",
            "drop": None if drop_of(m) is None else
            units.show_drop(drop_of(m), m.percent, m.drop_low, m.drop_high),
            "drop_key": drop,
            "agreement_pct": None if fid is None or fid.agreement_pct is None else
            round(fid.agreement_pct, 2),
            "sqnr_db": None if fid is None else round(fid.sqnr_db, 1),
            "size_bytes": m.size_bytes,
            "ratio": None if m.compression_ratio is None else round(m.compression_ratio, 2),
            "p50_ms": None if m.latency is None else round(m.latency.p50_ms, 4),
            "p95_ms": None if m.latency is None else round(m.latency.p95_ms, 4),
            "io": None if m.tensors is None else
            f"{m.tensors.input_dtype}/{m.tensors.output_dtype}",
            "gate": "reference" if d is None else ("PASS" if d.passed else "FAIL"),
            "reason": "" if d is None else d.reason,
        })
    return rows


run = gate
