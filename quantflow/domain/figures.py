"""Row charts of report.html: latency p50/p95, the drop with its 95% interval, and the layers of
an auto variant (which layer loses most to quantization, and which kept int16 or float).

One row per model, so long names never collide; every row also says in words what its colour
says (the gate's pass/fail mark, the layer's precision), for readers who cannot tell colours.
"""

from __future__ import annotations

from quantflow.core.results import GateResult, VariantMetrics
from quantflow.domain import units
from quantflow.domain.charts import BASE, FAIL, LINE, MUTED, PASS, Scale, Svg, esc, hatch, num
from quantflow.domain.gate import drop_of
from quantflow.domain.tradeoff import Threshold

ROW, LEFT, RIGHT = 30, 170, 560
PRECISION = {"int8": "#8c959f", "int16": "#0969da", "float": "#bf8700"}  # int16: hatched


def _frame(svg: Svg, xs: Scale, top: float, bottom: float, label: str, zero: bool) -> None:
    for t in xs.ticks():
        svg.line(xs(t), top, xs(t), bottom, "#eaeef2")
        svg.text(xs(t), bottom + 16, num(t), "middle")
    if zero and xs.lo <= 0 <= xs.hi:
        svg.line(xs(0), top, xs(0), bottom, BASE, width=1.2)
    svg.text((xs.a + xs.b) / 2, bottom + 36, label, "middle", 13)


def _vlines(svg: Svg, lines: list[Threshold], xs: Scale, top: float, bottom: float) -> None:
    for t in lines:
        if xs.lo <= t.value <= xs.hi:
            svg.line(xs(t.value), top - 6, xs(t.value), bottom, LINE, "6 4", 1.5)
            svg.text(xs(t.value), top - 10, f"{t.label} {t.value:g}", "middle", 11, LINE)


def _mark(d_passed: bool | None) -> tuple[str, str]:
    return ("", BASE) if d_passed is None else (("pass", PASS) if d_passed else ("FAIL", FAIL))


def latency(base: VariantMetrics, variants: list[VariantMetrics], gate: GateResult,
            lines: list[Threshold]) -> str:
    """p50 as a solid bar, p95 as its hatched extension; the thread count in the title."""
    passed = {d.name: d.passed for d in gate.decisions}
    rows = [m for m in [base, *variants] if m.latency]
    threads = sorted({m.latency.threads for m in rows if m.latency})
    svg = Svg(760, 90 + ROW * max(len(rows), 1))
    svg.add(hatch("lhatch"))
    if not rows:
        svg.text(20, 40, "no latency was measured")
        return svg.done("latency: nothing measured")
    top, bottom = 40, 40 + ROW * len(rows)
    hi = max([m.latency.p95_ms for m in rows if m.latency]
             + [t.value for t in lines if t.axis == "latency"]) * 1.12
    xs = Scale(0, hi, LEFT, RIGHT)
    _frame(svg, xs, top, bottom, f"latency per inference (ms), {'/'.join(map(str, threads))} "
           f"thread{'s' if threads != [1] else ''}", False)
    for i, m in enumerate(rows):
        lat, y = m.latency, top + ROW * i + 6
        assert lat is not None
        word, colour = _mark(passed.get(m.name) if m is not base else None)
        svg.text(LEFT - 8, y + 13, m.name, "end")
        svg.rect(xs(0), y, xs(lat.p95_ms) - xs(0), ROW - 12, "url(#lhatch)",
                 f'stroke="#0969da" data-variant="{esc(m.name)}" data-stat="p95"')
        svg.rect(xs(0), y, xs(lat.p50_ms) - xs(0), ROW - 12, "#0550ae", 'data-stat="p50"')
        svg.text(xs(lat.p95_ms) + 6, y + 13, f"p50 {lat.p50_ms:.3g} / p95 {lat.p95_ms:.3g} ms "
                 f"{word}", size=11, color=colour if word else BASE)
    _vlines(svg, [t for t in lines if t.axis == "latency"], xs, top, bottom)
    svg.rect(RIGHT + 40, top, 14, 10, "#0550ae")
    svg.text(RIGHT + 60, top + 9, "p50 (median)", size=11)
    svg.rect(RIGHT + 40, top + 18, 14, 10, "url(#lhatch)", 'stroke="#0969da"')
    svg.text(RIGHT + 60, top + 27, "p95", size=11)
    return svg.done("latency p50 and p95 per model")


def drops(base: VariantMetrics, variants: list[VariantMetrics], gate: GateResult,
          lines: list[Threshold]) -> str:
    """Each variant's drop (positive = worse) with its 95% paired interval as a whisker."""
    passed = {d.name: d.passed for d in gate.decisions}
    rows = [m for m in variants if drop_of(m) is not None]
    svg = Svg(760, 90 + ROW * max(len(rows), 1))
    if not rows:
        svg.text(20, 40, "no variant has a measured drop")
        return svg.done("drop: nothing measured")

    def sc(v: float | None) -> float:
        return units.scaled(v, base.percent) or 0.0

    vals = [sc(v) for m in rows for v in (drop_of(m), m.drop_low, m.drop_high) if v is not None]
    vals += [0.0] + [t.value for t in lines if t.axis == "drop"]
    pad = (max(vals) - min(vals)) * 0.1 or 0.5
    xs, top = Scale(min(vals) - pad, max(vals) + pad, LEFT, RIGHT), 40
    bottom = top + ROW * len(rows)
    unit = "pp" if base.percent else units.label(base.metric)
    _frame(svg, xs, top, bottom, f"{units.label(base.metric)} drop ({unit}; positive = worse "
           "than float), 95% interval", True)
    _vlines(svg, [t for t in lines if t.axis == "drop"], xs, top, bottom)
    for i, m in enumerate(rows):
        y, d = top + ROW * i + ROW / 2, sc(drop_of(m))
        word, colour = _mark(passed.get(m.name))
        svg.text(LEFT - 8, y + 4, m.name, "end")
        if m.drop_low is not None and m.drop_high is not None:
            lo, hi = xs(sc(m.drop_low)), xs(sc(m.drop_high))
            svg.line(lo, y, hi, y, MUTED, width=2)
            svg.line(lo, y - 6, lo, y + 6, MUTED, width=2)
            svg.line(hi, y - 6, hi, y + 6, MUTED, width=2)
        svg.add(f'<g class="drop" data-variant="{esc(m.name)}">')
        svg.marker("pass" if passed.get(m.name) else "fail", xs(d), y, 5)
        svg.add("</g>")
        text = units.show_drop(drop_of(m), base.percent, m.drop_low, m.drop_high)
        svg.text(RIGHT + 10, y + 4, f"{text} {word}", size=11, color=colour)
    return svg.done("drop with 95% interval per variant")


def layers(rows: list[tuple[str, float, str]], pid: str, limit: int = 40) -> str:
    """Layers by quantization error, worst first; the bar's fill and its text give the
    precision the layer kept (int8, int16 or float)."""
    rows = sorted(rows, key=lambda r: -r[1])[:limit]
    svg = Svg(760, 90 + 24 * max(len(rows), 1))
    svg.add(hatch(pid))
    top, bottom = 40, 40 + 24 * len(rows)
    xs = Scale(0, max([r[1] for r in rows] + [1e-12]) * 1.1, LEFT + 60, RIGHT)
    _frame(svg, xs, top, bottom, "quantization error of the layer (layers.csv)", False)
    for i, (layer, error, precision) in enumerate(rows):
        y = top + 24 * i + 4
        fill = PRECISION.get(precision, MUTED)
        pattern = f"url(#{pid})" if precision == "int16" else ""
        short = layer if len(layer) <= 32 else "…" + layer[-31:]
        svg.text(LEFT + 52, y + 12, short, "end", 11, extra=f"data-layer=\"{esc(layer)}\"")
        svg.rect(xs(0), y, xs(error) - xs(0), 16, pattern or fill, f'stroke="{fill}"')
        svg.text(xs(error) + 6, y + 12, f"{precision} ({error:.3g})", size=11)
    return svg.done("per-layer quantization error and kept precision")
