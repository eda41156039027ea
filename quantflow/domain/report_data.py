"""What report.html shows, gathered from a pipeline's artifacts (and its registry manifest).

The page is a pure function of these files, with no clock and no measuring, so `quantflow
report` re-renders the same bytes the run wrote, and the copy published into a registry version
equals the one beside report.md.
"""

from __future__ import annotations

import csv
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantflow.core.paths import PipelinePaths
from quantflow.core.results import GateResult, PublishRecord, VariantMetrics
from quantflow.core.tfenv import versions

LAYERS, SEARCH = "layers.csv", "search.json"


@dataclass(frozen=True)
class Published:
    """The registry version this run published: its id and the manifest's hashes."""

    version: str
    alias: str | None
    files: dict[str, dict[str, Any]]
    dvc_md5: dict[str, str | None] = field(default_factory=dict)
    spec_sha256: str | None = None


@dataclass(frozen=True)
class Layers:
    """An auto variant's per-layer record: (layer, error, precision) rows and its search."""

    variant: str
    rows: list[tuple[str, float, str]]
    search: dict[str, Any] | None


@dataclass(frozen=True)
class ReportData:
    pipeline: str
    description: str
    baseline: VariantMetrics
    variants: list[VariantMetrics]
    gate: GateResult
    provenance: dict[str, str | None]
    versions: dict[str, str]
    publish: PublishRecord | None = None
    published: Published | None = None
    layers: list[Layers] = field(default_factory=list)


def read_layers(name: str, folder: Path) -> Layers | None:
    """layers.csv (columns layer, error, precision) and search.json of a variant, if present."""
    table, search = folder / LAYERS, folder / SEARCH
    if not table.is_file():
        return None
    with open(table, newline="") as f:
        # a layer the search never ranked (full int8 passed at once) has no error to draw
        rows = [(r["layer"], float(r["error"]), r["precision"].strip())
                for r in csv.DictReader(f) if (r.get("error") or "").strip()]
    found = json.loads(search.read_text()) if search.is_file() else None
    return Layers(name, rows, found if isinstance(found, dict) else {"search": found}
                  if found is not None else None)


def tool_versions() -> dict[str, str]:
    return {"python": platform.python_version(), **versions()}


def gather(name: str, description: str, variant_names: list[str], paths: PipelinePaths,
           spec_sha256: str | None = None, published: Published | None = None,
           publish: PublishRecord | None = None) -> ReportData:
    """Every file the page needs; variants without metrics are left out (the gate failed
    them, and its table says so)."""
    baseline = VariantMetrics.read(paths.baseline_metrics)
    variants = [VariantMetrics.read(paths.variant_metrics(v)) for v in variant_names
                if paths.variant_metrics(v).exists()]
    info = json.loads(paths.prepare_info.read_text()) if paths.prepare_info.exists() else {}
    prov = {"spec_sha256": spec_sha256, "dataset_sha256": info.get("dataset_sha256"),
            "calibration_sha256": info.get("calibration_sha256")}
    layers = [lay for v in variant_names if (lay := read_layers(v, paths.variant_dir(v)))]
    return ReportData(name, description, baseline, variants, GateResult.read(paths.gate),
                      prov, tool_versions(), publish, published, layers)


def from_registry(record: PublishRecord, gate: GateResult) -> Published | None:
    """The published version of publish.json, if its manifest belongs to this gate result
    (a publish.json older than the gate, as after a failed publish, is not shown as current)."""
    if record.status != "published" or not record.path or not record.version:
        return None
    try:
        manifest = json.loads((Path(record.path) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("gate") != gate.model_dump(mode="json"):
        return None
    return Published(record.version, record.alias, manifest.get("files", {}),
                     manifest.get("dvc_md5", {}), manifest.get("spec_sha256"))
