"""report.html from hand-built metrics: valid, self-contained, one point per model, the gate's
thresholds drawn, pass and fail told apart by shape; and the page as a real browser draws it.

QUANTFLOW_REPORT_WORKSPACE=<folder with artifacts/digits> renders a real run's page instead;
QUANTFLOW_REPORT_SCREENSHOT=<png> keeps the browser's screenshot (docs/report.png is one).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from quantflow.core.paths import PipelinePaths
from quantflow.core.results import Check, GateResult, Latency, VariantDecision, VariantMetrics
from quantflow.domain import report_html
from quantflow.domain.charts import place_labels
from quantflow.domain.report_data import gather, read_layers
from quantflow.domain.tradeoff import pareto, thresholds
from quantflow.domain.verify import verify

VOID = {"meta", "br", "hr", "img", "input", "link", "col", "wbr", "source"}


def model(name: str, kind: str, acc: float | None, size: int | None, p50: float = 0.5,
          **kw) -> VariantMetrics:
    lat = Latency(p50_ms=p50, p95_ms=p50 * 1.5, mean_ms=p50, threads=1, warmup_runs=1,
                  timed_runs=10) if acc is not None else None
    return VariantMetrics(name=name, kind=kind, metric_value=acc, accuracy=acc, size_bytes=size,
                          num_classes=10, test_examples=300, latency=lat, **kw)


def check(metric: str, value: float, threshold: float, ok: bool = True) -> Check:
    return Check(metric=metric, value=value, threshold=threshold, passed=ok, reason=f"{metric}")


BASE = model("float", "float", 0.98, 8000)
VARIANTS = [
    model("i8", "int8", 0.975, 2100, 0.2, metric_drop=0.005, drop_low=0.0, drop_high=0.01),
    model("dr", "dynamic_range", 0.98, 2300, 0.4, metric_drop=0.0, drop_low=0.0, drop_high=0.0),
    model("f16", "float16", 0.98, 4100, 0.6, metric_drop=0.0, drop_low=-0.003, drop_high=0.003),
    model("qat", "qat", 0.93, 2200, 0.3, metric_drop=0.05, drop_low=0.03, drop_high=0.07),
    VariantMetrics(name="broken", kind="int16x8", status="failed", error="<boom> & co"),
]
CHECKS = [check("accuracy_drop", 0.0, 0.02), check("compression_ratio", 3.0, 2.5),
          check("latency_p50_ms", 0.3, 0.5)]
GATE = GateResult(pipeline="p<1>", selected=["i8", "dr"], decisions=[
    VariantDecision(name="i8", passed=True, checks=CHECKS, reason="all 3 checks passed"),
    VariantDecision(name="dr", passed=True, checks=CHECKS, reason="all 3 checks passed"),
    VariantDecision(name="f16", passed=False, checks=CHECKS, reason="compression_ratio < 2.5x"),
    VariantDecision(name="qat", passed=False, checks=CHECKS, reason="accuracy drop > 2 pp"),
    VariantDecision(name="broken", passed=False, reason="int16x8 failed: <boom> & co"),
])
LAYERS = "layer,error,precision\nconv1,0.02,int8\nconv2/<weird>,0.31,int16\ndense,0.9,float\n"


def workspace(tmp_path: Path) -> PipelinePaths:
    """The artifacts of a run, as files: gate.json, metrics, and an auto variant's layers."""
    p = PipelinePaths(tmp_path, "p")
    BASE.write(p.baseline_metrics)
    for m in VARIANTS:
        m.write(p.variant_metrics(m.name))
    GATE.write(p.gate)
    (p.variant_dir("i8") / "layers.csv").write_text(LAYERS)
    (p.variant_dir("i8") / "search.json").write_text(json.dumps({"budget_pp": 0.5, "tried": 7}))
    return p


def page(tmp_path: Path) -> str:
    p = workspace(tmp_path)
    return report_html.render(gather("p<1>", "a & b", [m.name for m in VARIANTS], p))


class Strict(HTMLParser):
    """Fails on a closing tag that does not close the innermost open one."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-3:]}"
        self.stack.pop()


def test_page_is_well_formed_and_self_contained(tmp_path):
    html = page(tmp_path)
    parser = Strict()
    parser.feed(html)
    parser.close()
    assert parser.stack == [], f"unclosed: {parser.stack}"
    for svg in re.findall(r"<svg .*?</svg>", html, re.S):
        ET.fromstring(svg)  # every chart is well-formed XML
    assert html.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in html
    assert not re.search(r"https?:|//[a-z]|<script|<link|<img|@import|url\((?!#)", html)
    ids = re.findall(r'id="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "ids are unique across the charts"
    assert "&lt;boom&gt; &amp; co" in html and "<boom>" not in html  # escaped
    assert "conv2/&lt;weird&gt;" in html


def test_one_point_per_measured_model_shapes_differ_by_gate(tmp_path):
    html = page(tmp_path)
    points = re.findall(r'<g class="point" data-variant="([^"]+)" data-gate="(\w+)">(.*?)</g>',
                        html, re.S)
    assert sorted(n for n, _, _ in points) == ["dr", "f16", "float", "i8", "qat"]
    shapes = {gate: body.split(" ")[0] for _, gate, body in points}
    assert shapes == {"float": "<rect", "pass": "<circle", "fail": "<line"}
    assert "Not plotted (nothing measured): broken" in html
    assert len(re.findall(r'class="drop" data-variant=', html)) == 4
    assert len(re.findall(r'data-stat="p95"', html)) == 5


def test_thresholds_come_from_the_checks():
    lines = {(t.axis, round(t.value, 6), t.label) for t in thresholds(GATE, BASE)}
    assert ("drop", 2.0, "max accuracy drop") in lines
    assert ("y", 96.0, "max drop 2 pp") in lines  # 98% - 2 pp
    assert ("x", 3200.0, "min ratio 2.5x") in lines  # 8000 bytes / 2.5
    assert ("latency", 0.5, "max p50") in lines
    own = GATE.model_copy(update={"decisions": [*GATE.decisions[:1], VariantDecision(
        name="dr", passed=True, checks=[check("size_bytes", 1.0, 3000)], reason="ok")]})
    assert any(t.label == "max size (dr)" for t in thresholds(own, BASE)), "an override says whose"


def test_pareto_front_and_lower_is_better():
    pts = [("a", 1.0, 0.9), ("b", 2.0, 0.95), ("c", 3.0, 0.94), ("d", 4.0, 0.99), ("e", 1.5, 0.9)]
    assert pareto(pts, higher_is_better=True) == ["a", "b", "d"]
    assert pareto(pts, higher_is_better=False) == ["a"]


def test_labels_of_crowded_points_do_not_overlap():
    pts = [(100 + 12 * i, 100.0, name) for i, name in enumerate(
        ["dynamic_range", "int8", "int8_fallback", "int16x8", "float16"])]
    placed = place_labels(pts, (0, 0, 700, 400))
    boxes = []
    for x, y, anchor, s in placed:
        w = 0.62 * 12 * len(s)
        x0 = x - (w if anchor == "end" else w / 2 if anchor == "middle" else 0)
        boxes.append((x0, y - 12, x0 + w, y + 2))
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)


def test_layers_section_from_layers_csv_and_search_json(tmp_path):
    p = workspace(tmp_path)
    lay = read_layers("i8", p.variant_dir("i8"))
    assert lay and [r[0] for r in lay.rows] == ["conv1", "conv2/<weird>", "dense"]
    html = page(tmp_path / "again")
    section = html.split("Where precision was kept")[1].split("<h2>")[0]
    assert "3 layers; kept 1 at int8, 1 at int16, 1 at float" in section
    worst_first = re.findall(r'data-layer="([^"]+)"', section)
    assert worst_first == ["dense", "conv2/&lt;weird&gt;", "conv1"]
    assert "budget_pp" in section and "float (0.9)" in section
    assert read_layers("dr", p.variant_dir("dr")) is None


def screenshot(html_file: Path, png: Path, tmp: Path) -> None:
    """Headless Chromium, no network features, its own profile."""
    subprocess.run([shutil.which("chromium") or "chromium", "--headless", "--no-sandbox",
                    "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", f"--user-data-dir={tmp / 'profile'}",
                    f"--screenshot={png}", "--window-size=1200,2000",
                    html_file.resolve().as_uri()], check=True, capture_output=True, timeout=120)


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="chromium is not installed (.ci/run installs it: apt-get install "
                           "chromium)")
def test_a_real_browser_draws_the_page(tmp_path):
    from PIL import Image

    real = os.environ.get("QUANTFLOW_REPORT_WORKSPACE")
    if real:
        target = Path(real) / "artifacts" / "digits" / "report.html"
    else:
        target = tmp_path / "report.html"
        target.write_text(page(tmp_path / "ws"))
    png = tmp_path / "shot.png"
    screenshot(target, png, tmp_path)
    img = Image.open(png).convert("RGB")
    assert img.size == (1200, 2000)
    small = img.resize((300, 500))
    pixels = list(small.getdata())
    ink = sum(1 for px in pixels if sum(px) < 600) / len(pixels)
    colours = {(r // 16, g // 16, b // 16) for r, g, b in pixels}
    assert ink > 0.03, f"only {ink:.1%} of the page is drawn on"
    assert len(colours) > 20, "the charts' colours are missing"
    if os.environ.get("QUANTFLOW_REPORT_SCREENSHOT"):
        img.crop((0, 0, 1200, 1500)).save(
            os.environ["QUANTFLOW_REPORT_SCREENSHOT"], optimize=True)


def test_published_page_is_listed_and_verified(tmp_path):
    """The page rides along in the version, with its sha256, so verify checks it too."""
    from quantflow.domain import registry as reg

    model = tmp_path / "i8.tflite"
    model.write_bytes(b"tflite bytes")
    gate = GateResult(pipeline="p", selected=["i8"], decisions=[
        VariantDecision(name="i8", passed=True, reason="ok")])
    seen = {}

    def attach(version, entries):
        seen.update(version=version, entries=entries)
        return {"report.html": f"<p>{version} {entries['i8.tflite']['sha256']}</p>".encode()}

    record = reg.publish("p", gate, {"i8": model}, tmp_path / "registry" / "p", "latest", {},
                         attach=attach)
    vdir = Path(record.path or "")
    manifest = json.loads((vdir / "manifest.json").read_text())
    assert seen["version"] == record.version and record.files == ["i8.tflite"]
    assert set(manifest["attachments"]) == {"report.html"}
    assert record.version in (vdir / "report.html").read_text()
    assert verify(tmp_path / "registry") == []
    (vdir / "report.html").write_text("edited")
    assert [p.kind for p in verify(tmp_path / "registry")] == ["tampered"]
