"""SVG primitives for report.html, built as plain strings.

No plotting library is installed and the page must open offline, so the charts are inline SVG
written here: scales with readable ticks, axes, the gate's marker shapes (a pass, a fail and the
float baseline differ in shape, not only in colour) and labels that step aside for each other.
Every piece of text goes through ``html.escape``: variant and layer names come from users.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

PASS, FAIL, BASE, LINE, MUTED = "#1a7f37", "#cf222e", "#24292f", "#9a6700", "#6e7781"
FONT = 12


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def num(v: float) -> str:
    """A short tick/value label: 1.2M, 35k, 0.25, 97.5."""
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:.3g}k"
    return f"{v:.4g}"


@dataclass(frozen=True)
class Scale:
    """Maps data [lo, hi] to pixels [a, b]; ``log`` for sizes, which span orders of magnitude."""

    lo: float
    hi: float
    a: float
    b: float
    log: bool = False

    def _t(self, v: float) -> float:
        return math.log10(v) if self.log else v

    def __call__(self, v: float) -> float:
        lo, hi = self._t(self.lo), self._t(self.hi)
        return self.a + (self._t(v) - lo) / ((hi - lo) or 1.0) * (self.b - self.a)

    def ticks(self, n: int = 5) -> list[float]:
        """1-2-5 steps; a log scale spanning less than a decade or so gets linear steps."""
        if self.log:
            lo, hi = math.floor(math.log10(self.lo)), math.ceil(math.log10(self.hi))
            cands = [m * 10.0 ** e for e in range(lo, hi + 1) for m in (1, 2, 5)]
            found = [t for t in cands if self.lo <= t <= self.hi]
            if len(found) >= 3:
                return found
        step = 10 ** math.floor(math.log10(((self.hi - self.lo) or 1.0) / n))
        step *= next(m for m in (1, 2, 5, 10) if (self.hi - self.lo) / (step * m) <= n)
        first = math.ceil(self.lo / step) * step
        return [first + i * step for i in range(int((self.hi - first) / step + 1e-9) + 1)]


def padded(values: list[float], frac: float = 0.08, log: bool = False) -> tuple[float, float]:
    """Data range with a margin, so points never sit on the frame."""
    lo, hi = min(values), max(values)
    if log:
        k = (hi / lo) ** frac if hi > lo else 2.0
        return lo / k, hi * k
    pad = (hi - lo) * frac or abs(hi) * 0.05 or 1.0
    return lo - pad, hi + pad


@dataclass
class Svg:
    """An SVG document under construction; ``done`` gives it a title for screen readers and
    no namespace (inline SVG in HTML needs none, and the page names no URL at all)."""

    width: int
    height: int
    parts: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.parts.append(text)

    def line(self, x1: float, y1: float, x2: float, y2: float, color: str = BASE,
             dash: str = "", width: float = 1.0) -> None:
        d = f' stroke-dasharray="{dash}"' if dash else ""
        self.add(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                 f'stroke="{color}" stroke-width="{width}"{d}/>')

    def rect(self, x: float, y: float, w: float, h: float, fill: str, extra: str = "") -> None:
        self.add(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" '
                 f'height="{max(h, 0):.1f}" fill="{fill}" {extra}/>')

    def text(self, x: float, y: float, s: object, anchor: str = "start", size: int = FONT,
             color: str = BASE, extra: str = "") -> None:
        self.add(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
                 f'fill="{color}" {extra}>{esc(s)}</text>')

    def marker(self, shape: str, x: float, y: float, r: float = 6) -> None:
        """pass: filled circle; fail: a cross; float: hollow square; pareto: ring overlay."""
        if shape == "pass":
            self.add(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{PASS}"/>')
        elif shape == "fail":
            for dx in (r, -r):
                self.line(x - dx, y - r, x + dx, y + r, FAIL, width=2.5)
        elif shape == "float":
            self.rect(x - r, y - r, 2 * r, 2 * r, "white", f'stroke="{BASE}" stroke-width="2"')
        elif shape == "front":
            self.add(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r + 4}" fill="none" '
                     f'stroke="{MUTED}" stroke-width="1.5"/>')

    def done(self, title: str) -> str:
        return (f'<svg width="{self.width}" '
                f'height="{self.height}" viewBox="0 0 {self.width} {self.height}" role="img" '
                f'font-family="sans-serif"><title>{esc(title)}</title>' + "".join(self.parts)
                + "</svg>")


def hatch(pid: str, color: str = "#0969da") -> str:
    """A diagonal-stripe fill (``url(#pid)``): tells a bar apart without its colour. Ids must
    be unique in the page, which holds several charts."""
    return (f'<defs><pattern id="{esc(pid)}" width="6" height="6" patternUnits="userSpaceOnUse" '
            f'patternTransform="rotate(45)"><rect width="6" height="6" fill="#ddf4ff"/>'
            f'<line x1="0" y1="0" x2="0" y2="6" stroke="{color}" stroke-width="2"/>'
            '</pattern></defs>')


def standalone(svg: str) -> str:
    """An inline SVG as a file of its own (an <img> data URI needs the namespace)."""
    return svg.replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1)


def axes(svg: Svg, xs: Scale, ys: Scale, x_label: str, y_label: str) -> None:
    """Frame, grid, ticks and axis titles; x ticks are thinned until their labels fit."""
    top, bottom, left, right = ys.b, ys.a, xs.a, xs.b
    svg.rect(left, top, right - left, bottom - top, "none", f'stroke="{MUTED}"')
    xt = xs.ticks()
    while len(xt) > 2 and (right - left) / len(xt) < 7 * max(len(num(t)) for t in xt):
        xt = xt[::2]
    for t in xt:
        svg.line(xs(t), top, xs(t), bottom, "#eaeef2")
        svg.text(xs(t), bottom + 16, num(t), "middle")
    for t in ys.ticks():
        svg.line(left, ys(t), right, ys(t), "#eaeef2")
        svg.text(left - 6, ys(t) + 4, num(t), "end")
    svg.text((left + right) / 2, bottom + 36, x_label, "middle", 13)
    svg.text(16, (top + bottom) / 2, y_label, "middle", 13,
             extra=f'transform="rotate(-90 16 {(top + bottom) / 2:.1f})"')


Box = tuple[float, float, float, float]


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_labels(points: list[tuple[float, float, str]], bounds: Box,
                 avoid: list[Box] | None = None) -> list[tuple[float, float, str, str]]:
    """(x, y, anchor, text) per point: the first spot around it, nearest first, whose label
    overlaps no label placed before, no marker and stays in bounds (far spots get a leader
    line from the caller); with no free spot, the one that overlaps least."""
    marks = [(x - 11, y - 11, x + 11, y + 11) for x, y, _ in points]
    taken = list(avoid or [])
    out = []
    for i, (x, y, s) in enumerate(points):
        others = taken + marks[:i] + marks[i + 1:]  # its own marker is what it labels
        w, h = 0.62 * FONT * len(s), FONT
        spots = [(13, 4, "start"), (-13, 4, "end"), (0, -14, "middle"), (0, 24, "middle"),
                 (11, -10, "start"), (11, 19, "start"), (-11, -10, "end"), (-11, 19, "end"),
                 *((0, dy, "middle") for dy in (-25, 33, -39, 47, -53, 61)),
                 *((2, dy, "start") for dy in (33, 47, 61, -25, -39))]
        scored = []
        for k, (dx, dy, anchor) in enumerate(spots):
            x0 = x + dx - (w if anchor == "end" else w / 2 if anchor == "middle" else 0)
            box = (x0, y + dy - h, x0 + w, y + dy + 2)
            outside = not (box[0] >= bounds[0] and box[2] <= bounds[2] and box[1] >= bounds[1]
                           and box[3] <= bounds[3])
            scored.append((100 * outside + sum(_overlaps(box, t) for t in others), k, box))
        _, k, box = min(scored)  # the nearest free spot, else the least crowded one
        chosen = spots[k]
        taken.append(box)
        out.append((x + chosen[0], y + chosen[1], chosen[2], s))
    return out
