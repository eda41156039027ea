"""report.html: one self-contained page (inline SVG and CSS, no script, no URL) that shows the
trade-off a person choosing a quantized model weighs, and the evidence behind the gate.

It opens offline, from a registry version as well as from artifacts/, and prints everything
the manifest vouches for: the decisions, the published files' hashes and the run's provenance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quantflow.core.io import write_text
from quantflow.domain import figures, units
from quantflow.domain.charts import esc
from quantflow.domain.gate import drop_of, value_of
from quantflow.domain.report_data import Layers, ReportData
from quantflow.domain.tradeoff import scatter, shown, thresholds

CSS = """body{font-family:sans-serif;max-width:1100px;margin:24px auto;padding:0 16px;color:#24292f}
h1{font-size:24px}h2{font-size:19px;margin-top:32px;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}code{font-size:12px;word-break:break-all}.pass{color:#1a7f37}
.fail{color:#cf222e;font-weight:bold}.note{color:#57606a;font-size:13px}ul{font-size:13px;margin:0;padding-left:18px}"""


def _table(head: list[str], rows: list[list[str]]) -> str:
    """Cells are already escaped HTML."""
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _gate_word(passed: bool | None) -> str:
    if passed is None:
        return "reference"
    return '<span class="pass">pass</span>' if passed else '<span class="fail">FAIL</span>'


def _decisions(d: ReportData) -> str:
    rows = []
    for x in d.gate.decisions:
        checks = "".join(f"<li>{'ok' if c.passed else '<b>FAIL</b>'}: {esc(c.reason)}</li>"
                         for c in x.checks)
        rows.append([esc(x.name), _gate_word(x.passed), esc(x.reason),
                     f"<ul>{checks}</ul>" if checks else ""])
    failed = [m for m in [d.baseline, *d.variants] if m.status == "failed"]
    extra = "".join(f"<p><b>{esc(m.name)}</b> failed:</p><pre>{esc(m.error or '')}</pre>"
                    for m in failed)
    selected = ", ".join(d.gate.selected) or "none"
    table = _table(["variant", "gate", "reason", "checks"], rows)
    notes = "".join(f"<li>{esc(n)}</li>" for n in d.gate.notes)
    return (f"<p>Selected for publishing: <b>{esc(selected)}</b></p>{table}"
            + (f"<p>What the test set cannot resolve:</p><ul>{notes}</ul>" if notes else "")
            + extra)


def _models(d: ReportData) -> str:
    passed = {x.name: x.passed for x in d.gate.decisions}
    rows = []
    for m in [d.baseline, *d.variants]:
        lat = m.latency
        rows.append([esc(m.name), esc(m.kind), f"{m.size_bytes:,}" if m.size_bytes else "-",
                     esc(units.show_value(value_of(m), m.percent)),
                     esc(units.show_drop(drop_of(m), m.percent, m.drop_low, m.drop_high)),
                     f"{lat.p50_ms:.3f} / {lat.p95_ms:.3f} ({lat.threads})" if lat else "-",
                     esc(m.status), _gate_word(passed.get(m.name) if m is not d.baseline
                                               else None)])
    name = units.label(d.baseline.metric)
    return _table(["model", "kind", "size (bytes)", name, "drop (95% interval)",
                   "p50 / p95 ms (threads)", "status", "gate"], rows)


def _publish(d: ReportData) -> str:
    if d.published:
        p = d.published
        rows = [[esc(n), esc(e.get("variant", "")), f"<code>{esc(e.get('sha256'))}</code>",
                 f"{e.get('size_bytes', 0):,}"] for n, e in sorted(p.files.items())]
        md5 = [[esc(k), f"<code>{esc(v or '-')}</code>"] for k, v in sorted(p.dvc_md5.items())]
        return (f"<p>Published version <b>{esc(p.version)}</b> (alias "
                f"<code>{esc(p.alias or '-')}</code>). Manifest hashes:</p>"
                + _table(["file", "variant", "sha256", "bytes"], rows)
                + (_table(["DVC-tracked", "md5"], md5) if md5 else ""))
    if d.publish and d.publish.status == "blocked":
        return f"<p class=\"fail\">Nothing published: {esc(d.publish.message)}</p>"
    return ("<p class=\"note\">Not published yet: the publish step writes the version and "
            "its hashes here.</p>")


def _provenance(d: ReportData) -> str:
    prov: dict[str, Any] = dict(d.provenance)
    if d.published and d.published.spec_sha256 and not prov.get("spec_sha256"):
        prov["spec_sha256"] = d.published.spec_sha256
    rows = [[esc(k), f"<code>{esc(v or 'not recorded yet (see publish)')}</code>"]
            for k, v in prov.items()]
    rows += [[esc(k), esc(v)] for k, v in d.versions.items()]
    return _table(["what", "value"], rows)


def _layers(lay: Layers, i: int) -> str:
    kept = {p: sum(1 for r in lay.rows if r[2] == p) for p in ("int8", "int16", "float")}
    head = (f"<h3>{esc(lay.variant)}: per-layer error</h3><p>{len(lay.rows)} layers; kept "
            + ", ".join(f"{n} at {esc(p)}" for p, n in kept.items()) + "</p>")
    search = ""
    if lay.search:
        search = _table(["search.json", "value"], [[esc(k), f"<code>{esc(v)}</code>"]
                                                    for k, v in lay.search.items()])
    return head + figures.layers(lay.rows, f"hatch-{i}") + search


def render(d: ReportData) -> str:
    """The page, deterministic for the same data (no clock, no random ids)."""
    lines = thresholds(d.gate, d.baseline)
    unplotted = [m.name for m in d.variants if shown(m) is None or not m.size_bytes]
    base = d.baseline
    sections = [
        f"<h1>Quantization report: {esc(d.pipeline)}</h1>",
        f"<p>{esc(d.description)}</p>" if d.description else "",
        f"<p>Task: {esc(base.task)}; metric: {esc(units.label(base.metric))}, "
        f"{'higher' if base.higher_is_better else 'lower'} is better; "
        f"{base.test_examples or '?'} test examples.</p>",
        "<h2>Metric against size</h2>", scatter(base, d.variants, d.gate),
        f"<p class=\"note\">Not plotted (nothing measured): {esc(', '.join(unplotted))}</p>"
        if unplotted else "",
        "<h2>Latency</h2>", figures.latency(base, d.variants, d.gate, lines),
        "<h2>Drop against float, with its 95% interval</h2>",
        figures.drops(base, d.variants, d.gate, lines),
        *(["<h2>Where precision was kept</h2>"] if d.layers else []),
        *(_layers(lay, i) for i, lay in enumerate(d.layers)),
        "<h2>Every model</h2>", _models(d),
        "<h2>Gate decisions</h2>", _decisions(d),
        "<h2>Published</h2>", _publish(d),
        "<h2>Provenance</h2>", _provenance(d),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>quantflow report: {esc(d.pipeline)}</title><style>{CSS}</style></head>"
            "<body>" + "\n".join(s for s in sections if s) + "</body></html>\n")


def write(d: ReportData, path: Path) -> Path:
    return write_text(path, render(d))
