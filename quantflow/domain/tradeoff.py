"""The metric-vs-size scatter: the float baseline, every variant, the Pareto front and the gate's
thresholds as lines, for report.html and the Prefect artifact.

Thresholds are read from the gate's own checks (each records its threshold), not from the spec,
so the picture shows what was decided, a variant's own gate override included, and
`quantflow report` can draw it from the artifacts alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from quantflow.core.results import GateResult, VariantMetrics
from quantflow.domain import units
from quantflow.domain.charts import LINE, MUTED, Scale, Svg, axes, esc, padded, place_labels
from quantflow.domain.gate import value_of


@dataclass(frozen=True)
class Threshold:
    axis: str  # "x" (size), "y" (the metric), "drop", "latency"
    value: float  # in the chart's units: bytes, the metric as shown, the drop as shown, ms
    label: str


def shown(m: VariantMetrics) -> float | None:
    return units.scaled(value_of(m), m.percent)


def thresholds(gate: GateResult, base: VariantMetrics) -> list[Threshold]:
    """One line per distinct threshold of the checks, named for the variants it applies to
    when it is not all of them."""
    name, pct, b = units.label(base.metric), base.percent, shown(base)
    sign = 1 if base.higher_is_better else -1
    found: dict[tuple[str, float, str], list[str]] = {}
    for d in gate.decisions:
        for c in d.checks:
            t, line = c.threshold, None
            if c.metric == name:
                line = ("y", units.scaled(t, pct), f"{'min' if sign > 0 else 'max'} {name}")
            elif c.metric in (f"{name}_drop", "accuracy_drop" if name == "accuracy" else ""):
                drop = units.scaled(t, pct) or 0.0
                line = ("drop", drop, f"max {name} drop")
                if b is not None:
                    what = f"max drop {drop:g}{' pp' if pct else ''}"
                    found.setdefault(("y", b - sign * drop, what), []).append(d.name)
            elif c.metric == "relative_drop" and b is not None:
                line = ("y", b - sign * t * abs(b), f"max relative drop {t:.1%}")
            elif c.metric == "size_bytes":
                line = ("x", t, "max size")
            elif c.metric == "compression_ratio" and base.size_bytes:
                line = ("x", base.size_bytes / t, f"min ratio {t:g}x")
            elif c.metric == "latency_p50_ms":
                line = ("latency", t, "max p50")
            if line:
                found.setdefault(line, []).append(d.name)  # type: ignore[arg-type]
    every = sum(1 for d in gate.decisions if d.checks)  # a failed conversion has none
    return [Threshold(a, v, lab if len(set(who)) == every else f"{lab} ({', '.join(who)})")
            for (a, v, lab), who in found.items()]


def pareto(points: list[tuple[str, float, float]], higher_is_better: bool) -> list[str]:
    """Names no other model beats on both size and metric, smallest first."""
    front, best = [], None
    for name, _size, value in sorted(points, key=lambda p: (p[1], -p[2] if higher_is_better
                                                           else p[2])):
        if best is None or (value > best if higher_is_better else value < best):
            front.append(name)
            best = value
    return front


def scatter(base: VariantMetrics, variants: list[VariantMetrics], gate: GateResult) -> str:
    """Metric (y) against .tflite size (x, log scale); shape says pass / fail / float."""
    passed = {d.name: d.passed for d in gate.decisions}
    models = [m for m in [base, *variants] if shown(m) is not None and m.size_bytes]
    pts = [(m.name, float(m.size_bytes or 0), float(shown(m) or 0)) for m in models]
    lines = thresholds(gate, base)
    svg, left, right, top, bottom = Svg(760, 440), 70, 600, 30, 380
    if not pts:
        svg.text(20, 40, "no model has both a size and a metric to plot")
        return svg.done("metric vs size: nothing to plot")
    sizes, ys = [p[1] for p in pts], [p[2] for p in pts]
    xs_in = [t.value for t in lines if t.axis == "x" and min(sizes) / 10 < t.value
             < max(sizes) * 10]
    xs = Scale(*padded(sizes + xs_in, log=True), left, right, log=True)
    near = max(max(ys) - min(ys), 0.02 * max(abs(v) for v in ys), 1e-9) * 2
    ysc = Scale(*padded(ys + [t.value for t in lines if t.axis == "y"
                              and min(abs(t.value - v) for v in ys) <= near]), bottom, top)
    name = units.label(base.metric) + (" (%)" if base.percent else "")
    axes(svg, xs, ysc, "size of the .tflite file (bytes, log scale)", name)
    avoid = _threshold_lines(svg, lines, xs, ysc, (left, top, right, bottom))
    front = pareto(pts, base.higher_is_better)
    coords = {n: (xs(s), ysc(v)) for n, s, v in pts}
    steps = [coords[n] for n in front]
    path = " ".join(f"{x:.1f},{y:.1f} {steps[i + 1][0]:.1f},{y:.1f}" for i, (x, y)
                    in enumerate(steps[:-1])) + f" {steps[-1][0]:.1f},{steps[-1][1]:.1f}"
    svg.add(f'<polyline points="{path}" fill="none" stroke="{MUTED}" stroke-dasharray="2 3" '
            'stroke-width="1.5"/>')
    for n, (x, y) in coords.items():
        shape = "float" if n == base.name else ("pass" if passed.get(n) else "fail")
        svg.add(f'<g class="point" data-variant="{esc(n)}" data-gate="{shape}">')
        svg.marker(shape, x, y)
        if n in front:
            svg.marker("front", x, y)
        svg.add("</g>")
    for (px, py), (x, y, anchor, s) in zip(coords.values(), place_labels(
            [(*coords[n], n) for n, _, _ in pts], (left, 4, right, bottom), avoid),
            strict=True):
        if abs(y - py) > 20:
            svg.line(px, py, x, y - 10 if y > py else y + 2, MUTED, width=0.8)
        svg.text(x, y, s, anchor)
    _legend(svg, right + 14, top + 10)
    return svg.done(f"{name} against size: float baseline, variants, Pareto front, thresholds")


def _threshold_lines(svg: Svg, lines: list[Threshold], xs: Scale, ys: Scale,
                     box: tuple[float, float, float, float]) -> list[tuple[float, ...]]:
    """Dashed lines with their labels; returns the label boxes for the point labels to avoid."""
    left, top, right, bottom = box
    avoid: list[tuple[float, ...]] = []
    for i, t in enumerate(ln for ln in lines if ln.axis in ("x", "y")):
        if t.axis == "y":
            off = "below" if t.value < ys.lo else "above" if t.value > ys.hi else ""
            if off:  # far from every model: named at the frame, not drawn to scale
                y = bottom - 6 if off == "below" else top + 14
                svg.text(right - 4, y, f"{t.label}: {t.value:.4g} ({off} the chart)",
                         "end", 11, LINE)
                avoid.append((right - 7 * len(t.label) - 130, y - 12, right, y + 2))
                continue
            y = ys(t.value)
            svg.line(left, y, right, y, LINE, "6 4", 1.5)
            svg.text(right - 4, y - 4, f"{t.label}: {t.value:.4g}", "end", 11, LINE)
            avoid.append((right - 7 * len(t.label) - 50, y - 16, right, y))
        elif xs.lo <= t.value <= xs.hi:
            x = xs(t.value)
            svg.line(x, top, x, bottom, LINE, "6 4", 1.5)
            svg.text(x + 4, top + 14 + 14 * i, f"{t.label}", "start", 11, LINE)
            avoid.append((x, top + 14 * i, x + 7 * len(t.label), top + 16 + 14 * i))
    return avoid


def _legend(svg: Svg, x: float, y: float) -> None:
    items = [("float", "float baseline"), ("pass", "passed the gate"),
             ("fail", "failed the gate"), ("front", "on the Pareto front")]
    for i, (shape, label) in enumerate(items):
        svg.marker(shape, x + 8, y + 22 * i)
        svg.text(x + 24, y + 22 * i + 4, label, size=11)
    yy = y + 22 * len(items)
    svg.line(x, yy, x + 18, yy, LINE, "6 4", 1.5)
    svg.text(x + 24, yy + 4, "gate threshold", size=11)
    svg.line(x, yy + 22, x + 18, yy + 22, MUTED, "2 3", 1.5)
    svg.text(x + 24, yy + 26, "Pareto front", size=11)
