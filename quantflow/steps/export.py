"""export: the float baseline. SavedModel + float .tflite, evaluated as the gate's reference."""

from __future__ import annotations

import time
from pathlib import Path

from quantflow.core import io
from quantflow.core.results import VariantMetrics
from quantflow.core.spec import EvaluationSpec
from quantflow.core.tfenv import tf_modules
from quantflow.steps import StepContext


def export_model(trained: Path, saved_model: Path, float_tflite: Path) -> float:
    """Write the SavedModel and the float .tflite (both atomically); return seconds taken."""
    tf, keras = tf_modules()
    start = time.perf_counter()
    model = keras.models.load_model(trained, compile=False)
    io.replace_dir(saved_model, lambda tmp: tf.saved_model.save(model, str(tmp)))
    io.write_bytes(float_tflite, tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return time.perf_counter() - start


def evaluate_baseline(float_tflite: Path, dataset: Path, cfg: EvaluationSpec, out: Path,
                      latency_lock: Path | None = None) -> VariantMetrics:
    from quantflow.domain.evaluate import evaluate_tflite

    digest = io.sha256_file(float_tflite)  # the bytes this evaluation measures
    metrics = evaluate_tflite(float_tflite, dataset, cfg, name="float", kind="float",
                              latency_lock=latency_lock)
    metrics.sha256 = digest
    metrics.write(out)
    return metrics


def export(ctx: StepContext) -> VariantMetrics:
    p = ctx.paths
    p.export_dir.mkdir(parents=True, exist_ok=True)
    seconds = export_model(p.trained, p.saved_model, p.float_tflite)
    metrics = evaluate_baseline(p.float_tflite, p.dataset, ctx.pipeline.evaluation,
                                p.baseline_metrics, latency_lock=p.lock.with_suffix(".latency"))
    metrics.convert_seconds = round(seconds, 3)
    metrics.write(p.baseline_metrics)
    return metrics


run = export
