"""metrics.json, variants.csv and report.md from hand-built metrics and gate decisions."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from quantflow.core.results import (
    Check,
    GateResult,
    Latency,
    TensorTypes,
    VariantDecision,
    VariantMetrics,
)
from quantflow.domain import report


def metrics(name: str, kind: str, accuracy: float, size: int, **kw: Any) -> VariantMetrics:
    return VariantMetrics(
        name=name,
        kind=kind,
        accuracy=accuracy,
        num_classes=10,
        size_bytes=size,
        compression_ratio=4000 / size,
        accuracy_drop=round(0.97 - accuracy, 6),
        latency=Latency(
            p50_ms=0.25, p95_ms=0.4, mean_ms=0.3, threads=2, warmup_runs=1, timed_runs=10
        ),
        tensors=TensorTypes(input_dtype="int8", output_dtype="int8"),
        **kw,
    )


BASELINE = metrics("float", "float", 0.97, 4000).model_copy(
    update={"compression_ratio": None, "accuracy_drop": None}
)
VARIANTS = [
    metrics("i8", "int8", 0.96, 1000),
    metrics("f16", "float16", 0.5, 2000),
    VariantMetrics(
        name="qat", kind="qat", status="failed", error="Traceback ...\nValueError: bad | thing"
    ),
]
GATE = GateResult(
    pipeline="digits",
    decisions=[
        VariantDecision(
            name="i8",
            passed=True,
            reason="all 2 checks passed",
            checks=[
                Check(
                    metric="accuracy",
                    value=0.96,
                    threshold=0.9,
                    passed=True,
                    reason="accuracy 0.9600 >= min 0.9000",
                )
            ],
        ),
        VariantDecision(
            name="f16",
            passed=False,
            reason="accuracy 0.5000 < min 0.9000",
            checks=[
                Check(
                    metric="accuracy",
                    value=0.5,
                    threshold=0.9,
                    passed=False,
                    reason="accuracy 0.5000 < min 0.9000",
                )
            ],
        ),
        VariantDecision(name="qat", passed=False, reason="qat failed: ValueError: bad | thing"),
    ],
    selected=["i8"],
)


def test_metrics_json_is_flat_numbers_per_model(tmp_path: Path) -> None:
    path = report.write_metrics(BASELINE, VARIANTS, GATE, tmp_path / "out" / "metrics.json")
    data = json.loads(path.read_text())
    assert list(data) == ["float", "i8", "f16", "qat"]
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600
    assert data["float"] == {
        "accuracy": 0.97,
        "size_bytes": 4000,
        "latency_p50_ms": 0.25,
        "latency_p95_ms": 0.4,
    }
    i8 = data["i8"]
    assert i8["compression_ratio"] == 4.0 and i8["accuracy_drop_pp"] == pytest.approx(1.0)
    assert i8["passed"] is True and i8["selected"] is True
    assert data["f16"]["passed"] is False
    assert data["qat"] == {"passed": False, "selected": False}  # nothing measured, no nulls
    assert all(not isinstance(v, dict | list) for m in data.values() for v in m.values())


def test_plot_csv_has_one_row_per_model_float_first(tmp_path: Path) -> None:
    path = report.write_plot(BASELINE, VARIANTS, GATE, tmp_path / "variants.csv")
    rows = list(csv.DictReader(path.read_text().splitlines()))
    assert list(rows[0]) == report.PLOT_COLUMNS
    assert [r["name"] for r in rows] == ["float", "i8", "f16", "qat"]
    assert rows[0] == {
        "name": "float",
        "kind": "float",
        "accuracy": "0.97",
        "size_bytes": "4000",
        "latency_p50_ms": "0.25",
        "passed": "",
    }
    assert [r["passed"] for r in rows[1:]] == ["true", "false", "false"]
    assert rows[3]["accuracy"] == "" and rows[3]["size_bytes"] == ""


def test_report_md_tables_every_model_with_reasons_and_errors(tmp_path: Path) -> None:
    path = report.write_report(
        "digits", BASELINE, VARIANTS, GATE, tmp_path / "report.md", description="Digits, 8x8."
    )
    text = path.read_text()
    assert text.startswith("# Quantization report: digits\n\nDigits, 8x8.\n")
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(table) == 5  # header + float + three variants
    i8 = next(line for line in table if line.startswith("| i8 "))
    for cell in [
        "int8",
        "1,000",
        "4.00x",
        "96.00%",
        "| 1.00 pp |",
        "0.250",
        "0.400",
        "| 2 |",
        "int8/int8",
        "ok",
        "pass",
    ]:
        assert cell in i8
    qat = next(line for line in table if line.startswith("| qat "))
    assert "failed | FAIL" in qat and qat.count(" - ") >= 7
    assert "**Selected for publishing:** i8" in text
    assert "- **f16**: FAILED - accuracy 0.5000 < min 0.9000" in text
    assert "  - FAIL: accuracy 0.5000 < min 0.9000" in text
    assert "qat failed: ValueError: bad \\| thing" in text  # pipes cannot break the list
    assert "### qat (qat)\n\n```\nTraceback ...\nValueError: bad | thing\n```" in text


def test_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "metrics.json"
    path.write_text("old\n")

    def crash(*args: Any) -> None:
        raise OSError("disk vanished")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk vanished"):
        report.write_metrics(BASELINE, VARIANTS, GATE, path)
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # no temp left


def test_gate_report_and_registry_import_without_tensorflow() -> None:
    code = (
        "import sys, quantflow.domain.gate, quantflow.domain.report, quantflow.domain.registry\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras')]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
