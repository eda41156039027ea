"""report.md's section for each searching variant (kind auto), read from its search.json:
what stayed above int8 (by the model's own layer names), what that cost against full int8,
and how long the search took."""

from __future__ import annotations

import csv
import json
from pathlib import Path


def _pct(new: float | None, old: float | None) -> str:
    if new is None or not old:
        return "-"
    return f"{100 * (new - old) / old:+.1f}%"


def section(name: str, folder: Path) -> list[str]:
    """Markdown lines for one variant's search; none when it did not search."""
    record = folder / "search.json"
    if not record.exists():
        return []
    doc = json.loads(record.read_text())
    chosen, full = doc["candidates"][doc["selected"]], doc["full_int8"]
    errors: dict[str, str] = {}
    if (folder / "layers.csv").exists():
        with open(folder / "layers.csv", newline="") as fh:
            errors = {r["tensor"]: r["error"] for r in csv.DictReader(fh)}
    verdict = "passed" if doc["passed"] else "FAILED (best candidate kept, not published)"
    lines = ["", f"## {name}: layers kept above int8", "",
             f"{verdict} after {doc['evaluations']} evaluations in {doc['wall_seconds']:.1f} s "
             f"(budget {doc['max_evaluations']} evaluations / {doc['timeout_seconds']:g} s; "
             f"objective {doc['objective']}).", ""]
    if chosen["tensors"]:
        lines += ["| layer | precision | own int8 error | tensor |", "|---|---|---:|---|"]
        for (tensor, precision), layer in zip(chosen["tensors"].items(),
                                              chosen["precisions"], strict=True):
            lines.append(f"| {layer} | {precision} | {errors.get(tensor, '-')} | `{tensor}` |")
    else:
        lines.append("Every layer stayed in int8.")
    size, lat = chosen["size_bytes"], chosen["latency_p50_ms"]
    lines += ["", f"Cost against full int8: size {size} bytes vs {full['size_bytes']} "
              f"({_pct(size, full['size_bytes'])}), p50 latency "
              f"{lat if lat is None else round(lat, 3)} ms vs "
              f"{full['latency_p50_ms'] and round(full['latency_p50_ms'], 3)} ms "
              f"({_pct(lat, full['latency_p50_ms'])})."]
    return lines
