"""When report.html is written: by the gate (before anything is published), by publish (with
the version and its hashes, the same bytes into the registry and beside report.md) and by
`quantflow report` (re-rendered from the artifacts, nothing run). Also latency.csv, the DVC
plot of p50/p95 per model.

report.html is a view of files DVC already tracks, so it is not a DVC output itself: publish
rewriting a gate output would make DVC see the gate as changed after every run.
"""

from __future__ import annotations

import base64
import csv
import io
from dataclasses import replace
from pathlib import Path
from typing import Any

from quantflow.core.io import write_bytes, write_text
from quantflow.core.request import StepContext
from quantflow.core.results import GateResult, PublishRecord, VariantMetrics
from quantflow.domain import report_html
from quantflow.domain.charts import standalone
from quantflow.domain.report_data import Published, ReportData, from_registry, gather
from quantflow.domain.tradeoff import scatter

LATENCY_COLUMNS = ["bar", "variant", "percentile", "latency_ms", "threads", "passed"]


def data(ctx: StepContext, **kw: Any) -> ReportData:
    """The page's data for this step's pipeline (reads only names and the description)."""
    return gather(ctx.name, ctx.pipeline.description, [v.name for v in ctx.pipeline.variants],
                  ctx.paths, **kw)


def write_latency(baseline: VariantMetrics, variants: list[VariantMetrics], gate: GateResult,
                  path: Path) -> Path:
    """Two rows per model ('int8 p50 (1 thread)', 'int8 p95 ...'): DVC's built-in
    bar_horizontal draws one bar per row, and `dvc plots diff` puts each revision's bar beside
    the others."""
    passed = {d.name: d.passed for d in gate.decisions}
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(LATENCY_COLUMNS)
    for m in [baseline, *variants]:
        if m.latency is None:
            continue
        ok = "" if m is baseline else str(passed.get(m.name, False)).lower()
        for pct, ms in (("p50", m.latency.p50_ms), ("p95", m.latency.p95_ms)):
            t = m.latency.threads
            bar = f"{m.name} {pct} ({t} thread{'s' if t != 1 else ''})"
            out.writerow([bar, m.name, pct, ms, t, ok])
    return write_text(path, buf.getvalue())


def for_gate(ctx: StepContext) -> Path:
    """The gate's page: decisions and charts; the publish section says it is still to come."""
    d = data(ctx)
    write_latency(d.baseline, d.variants, d.gate, ctx.paths.latency_plot)
    return report_html.write(d, ctx.paths.report_html)


class Attachment:
    """registry.publish's ``attach`` callback (registry.Attach): renders the page once the
    version id and the models' hashes exist, and keeps the bytes so artifacts/ gets the very
    same file."""

    def __init__(self, ctx: StepContext, extra: dict[str, Any]) -> None:
        self.ctx, self.extra, self.page = ctx, extra, b""

    def __call__(self, version: str, entries: dict[str, Any]) -> dict[str, bytes]:
        spec = self.extra.get("spec_sha256")
        pub = Published(version, self.ctx.pipeline.publish.alias, entries,
                        self.extra.get("dvc_md5", {}), spec)
        self.page = report_html.render(data(self.ctx, spec_sha256=spec, published=pub)).encode()
        return {self.ctx.paths.report_html.name: self.page}

    def finish(self, record: PublishRecord) -> Path:
        """After publish: the published page, or (blocked) the gate's page saying why."""
        p = self.ctx.paths.report_html
        if record.status == "published" and self.page:
            return write_bytes(p, self.page)
        d = data(self.ctx, spec_sha256=self.extra.get("spec_sha256"), publish=record)
        return report_html.write(d, p)


def rerender(ctx: StepContext) -> Path:
    """`quantflow report`: the page from what is on disk; publish.json counts only if its
    version's manifest holds this very gate result."""
    p = ctx.paths
    if not p.gate.exists() or not p.baseline_metrics.exists():
        raise FileNotFoundError(f"{p.gate}: no gate result yet; run `quantflow run {ctx.name}`")
    record = PublishRecord.read(p.publish_record) if p.publish_record.exists() else None
    d = data(ctx, spec_sha256=ctx.pipeline.fingerprint())
    pub = from_registry(record, d.gate) if record else None
    # a blocked publish.json is this gate's when the gate selects nothing now
    blocked = record if record and record.status == "blocked" and not d.gate.selected else None
    return report_html.write(replace(d, publish=blocked, published=pub), p.report_html)


def markdown(ctx: StepContext) -> str:
    """The Prefect artifact: the scatter as an <img> data URI (the UI renders markdown images,
    and a data URI needs no server to fetch it from), then where the full page is."""
    d = data(ctx)
    svg = standalone(scatter(d.baseline, d.variants, d.gate))
    uri = "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
    rel = ctx.paths.report_html.relative_to(ctx.workspace)
    return (f"# {ctx.name}: metric against size\n\n![metric against size, one point per "
            f"model]({uri})\n\nSelected: {', '.join(d.gate.selected) or 'none'}. Latency, "
            f"drops with their intervals and every gate reason: `{rel}` (open offline).\n")
