"""export: the float baseline. One SavedModel (every conversion starts from it) + the float
.tflite, evaluated as the gate's reference, with its raw test outputs (outputs.npy)."""

from __future__ import annotations

import time
from pathlib import Path

from quantflow.core import io
from quantflow.core.request import StepContext
from quantflow.core.results import VariantMetrics
from quantflow.core.spec import EvaluationSpec

# model.signature: the signature a user's SavedModel is converted from.
READS = ("evaluation", "model.signature")


def export_model(trained: Path, saved_model: Path, float_tflite: Path,
                 signature: str = "serving_default") -> float:
    """Write the SavedModel once and the float .tflite from it (both atomically); a .tflite
    model is the float baseline as it is. Return the seconds taken."""
    from quantflow.domain import savedmodel

    start = time.perf_counter()
    if savedmodel.write_saved_model(trained, saved_model) is None:
        io.write_bytes(float_tflite, trained.read_bytes())
    else:
        io.write_bytes(float_tflite, savedmodel.convert(savedmodel.converter(saved_model,
                                                                       signature)))
    return time.perf_counter() - start


def evaluate_baseline(float_tflite: Path, dataset: Path, cfg: EvaluationSpec, out: Path,
                      latency_lock: Path | None = None, outputs: Path | None = None,
                      workspace: Path | None = None) -> VariantMetrics:
    """The reference metrics, and (at ``outputs``) the raw test outputs variants compare to."""
    from quantflow.domain.evaluate import evaluate_tflite

    digest = io.sha256_file(float_tflite)  # the bytes this evaluation measures
    metrics = evaluate_tflite(float_tflite, dataset, cfg, name="float", kind="float",
                              latency_lock=latency_lock, save_outputs=outputs,
                              workspace=workspace)
    metrics.sha256 = digest
    metrics.write(out)
    return metrics


def export(ctx: StepContext) -> VariantMetrics:
    p = ctx.paths
    p.export_dir.mkdir(parents=True, exist_ok=True)
    seconds = export_model(p.trained, p.saved_model, p.float_tflite,
                           ctx.pipeline.model.signature_key())
    metrics = evaluate_baseline(p.float_tflite, p.dataset, ctx.pipeline.evaluation,
                                p.baseline_metrics, latency_lock=p.lock.with_suffix(".latency"),
                                outputs=p.float_outputs, workspace=ctx.workspace)
    metrics.convert_seconds = round(seconds, 3)
    metrics.write(p.baseline_metrics)
    return metrics


run = export
