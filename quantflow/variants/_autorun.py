"""The auto kind's run: AEQ candidates gated by the quantize step's judge, and the record of
the search (search.json, layers.csv) that the report and a reviewer read."""

from __future__ import annotations

import csv
import io as _io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantflow.core import io
from quantflow.variants import ConvertInputs
from quantflow.variants._aeq import Layer, calibrate, layers, quantize, recipe
from quantflow.variants._ranking import model_name, rank, tensor_losses
from quantflow.variants._search import Candidate, Outcome, Search, Tried


@dataclass(frozen=True)
class Best:
    passed: bool
    path: Path
    summary: str


def _outcome(inputs: ConvertInputs, path: Path) -> Outcome:
    """Gate one candidate exactly as the gate step will gate the variant; a candidate that
    cannot be built or measured is a failed one, and the search goes on."""
    from quantflow.domain.gate import drop_of
    from quantflow.domain.units import show_drop

    assert inputs.judge is not None
    m, decision = inputs.judge(path)
    extra = {"file": path.name, "metric": m.metric, "metric_value": m.metric_value,
             "drop_shown": show_drop(drop_of(m), m.percent), "sha256": io.sha256_file(path)}
    return Outcome(decision.passed, drop_of(m), m.size_bytes,
                   m.latency.p50_ms if m.latency else None, decision.reason, extra)


def _evaluator(inputs: ConvertInputs, io_type: str, qsvs: dict[str, Any], work: Path) -> Any:
    work.mkdir(parents=True, exist_ok=True)
    count = [0]

    def evaluate(candidate: Candidate) -> Outcome:
        count[0] += 1
        path = work / f"candidate-{count[0]:03d}.tflite"
        try:
            assert inputs.float_tflite is not None
            quantize(inputs.float_tflite, recipe(candidate, io_type), qsvs, path, io_type)
            return _outcome(inputs, path)
        except Exception as exc:  # a broken candidate fails; the search carries on
            return Outcome(False, None, None, None, f"candidate failed: {exc}"[:500],
                           {"file": path.name})
    return evaluate


def search(inputs: ConvertInputs, variant: Any, work: Path, record: Path,
           ranking_samples: int) -> Best:
    """Calibrate once, search, write search.json and layers.csv into ``record``."""
    start = time.monotonic()
    assert inputs.float_tflite is not None
    x = io.load_calibration(inputs.calibration)
    qsvs = calibrate(inputs.float_tflite, x)
    found = layers(inputs.float_tflite, qsvs)
    ranked: list[tuple[Layer, float]] = []

    def ranking() -> list[str]:
        ranked[:] = rank(found, tensor_losses(inputs.float_tflite, x[:ranking_samples], qsvs))
        return [layer.scope for layer, _ in ranked]

    s = Search(_evaluator(inputs, variant.io_type, qsvs, work), variant.max_evaluations,
               variant.timeout_seconds, variant.objective)
    s.run(ranking, list(variant.precisions))
    best = s.best()
    if best is None:
        raise RuntimeError("auto: no candidate was evaluated within the budget")
    wall = time.monotonic() - start
    names = {layer.scope: model_name(layer.scope) for layer in found}
    write_record(record, variant, s, best, ranked or [(la, None) for la in found], names, wall)
    return Best(best.outcome.passed, work / best.outcome.extra["file"],
                _summary(best, len(s.tried)))


def _summary(best: Tried, evaluations: int) -> str:
    counts = {p: sum(1 for v in best.candidate.values() if v == p) for p in ("float", "int16")}
    shown = best.outcome.extra.get("drop_shown", "not measured")
    int16 = f" and {counts['int16']} in int16" if counts["int16"] else ""
    return (f"best candidate: drop {shown} with {counts['float']} layers in float{int16} "
            f"after {evaluations} evaluations ({best.outcome.reason})")


def _candidate_row(i: int, t: Tried, names: dict[str, str]) -> dict[str, Any]:
    o = t.outcome
    return {"index": i, "stage": t.stage, "passed": o.passed, "reason": o.reason,
            "precisions": {names.get(s, s): p for s, p in sorted(t.candidate.items())},
            "tensors": dict(sorted(t.candidate.items())), "drop": o.drop,
            "size_bytes": o.size_bytes, "latency_p50_ms": o.latency_ms,
            "seconds": round(t.seconds, 3), **o.extra}


def write_record(record: Path, variant: Any, s: Search, best: Tried,
                 ranked: list[tuple[Layer, float | None]], names: dict[str, str],
                 wall: float) -> None:
    """search.json: every candidate and the one chosen; layers.csv: the ranking."""
    import json

    rows = [_candidate_row(i, t, names) for i, t in enumerate(s.tried)]
    doc = {"objective": variant.objective, "io_type": variant.io_type,
           "precisions": list(variant.precisions), "max_evaluations": variant.max_evaluations,
           "timeout_seconds": variant.timeout_seconds, "evaluations": len(s.tried),
           "wall_seconds": round(wall, 3), "passed": best.outcome.passed,
           "selected": s.tried.index(best), "full_int8": rows[0], "candidates": rows}
    io.write_text(record / "search.json", json.dumps(doc, indent=2) + "\n")
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["layer", "error", "precision", "op", "tensor"])
    for layer, error in ranked:
        w.writerow([names[layer.scope], "" if error is None else f"{error:.6g}",
                    best.candidate.get(layer.scope, "int8"), layer.op, layer.scope])
    io.write_text(record / "layers.csv", buf.getvalue())
