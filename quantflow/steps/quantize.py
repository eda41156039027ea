"""quantize: convert one variant and evaluate it. A failure is recorded, never raised, so one
broken variant cannot take the others (or the gate) down."""

from __future__ import annotations

import shutil
import time
import traceback
from functools import partial
from pathlib import Path
from typing import Any

from quantflow.core.request import StepContext
from quantflow.core.results import VariantDecision, VariantMetrics
from quantflow.variants import ConvertInputs, converter

# Its own variant item (minus its gate, the gate's to read); QAT fine-tunes with `train`.
# model.signature: the signature of a user's SavedModel that converters convert.
READS = ("variants.{variant}", "-variants.{variant}.gate", "train", "evaluation",
         "model.signature")


def quantize(ctx: StepContext, variant_name: str) -> VariantMetrics:
    from quantflow.domain.evaluate import evaluate_tflite

    p, spec = ctx.paths, ctx.pipeline
    variant = spec.variant(variant_name)
    out, metrics_path = p.variant_tflite(variant_name), p.variant_metrics(variant_name)
    shutil.rmtree(p.variant_dir(variant_name), ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    baseline = VariantMetrics.read(p.baseline_metrics)
    inputs = ConvertInputs(trained=p.trained, saved_model=p.saved_model,
                           calibration=p.calibration, dataset=p.dataset, train=spec.train,
                           signature=spec.model.signature_key(), float_tflite=p.float_tflite,
                           judge=partial(judge, ctx, variant, baseline))
    start = time.perf_counter()
    try:
        converter(variant.kind)(inputs, variant, out)
        converted = time.perf_counter() - start
        metrics = evaluate_tflite(out, p.dataset, spec.evaluation, name=variant.name,
                                  kind=variant.kind, baseline=baseline,
                                  float_outputs=p.float_outputs, workspace=ctx.workspace,
                                  latency_lock=p.lock.with_suffix(".latency"), variant=variant)
        metrics.convert_seconds = round(converted, 3)
    except Exception as exc:  # recorded as a failed variant; the others carry on
        out.unlink(missing_ok=True)
        detail = "".join(traceback.format_exception_only(exc)).strip()
        metrics = VariantMetrics(name=variant.name, kind=variant.kind, status="failed",
                                 error=detail[-2000:])
    metrics.write(metrics_path)
    return metrics


def judge(ctx: StepContext, variant: Any, baseline: VariantMetrics,
          candidate: Path) -> tuple[VariantMetrics, VariantDecision]:
    """A searching kind's candidate, measured as this step measures a variant and decided by
    the gate's own function, so that "passes" means what it means for the gate step."""
    from quantflow.domain.evaluate import evaluate_tflite
    from quantflow.domain.gate import decide

    p, spec = ctx.paths, ctx.pipeline
    m = evaluate_tflite(candidate, p.dataset, spec.evaluation, name=variant.name,
                        kind=variant.kind, baseline=baseline, float_outputs=p.float_outputs,
                        workspace=ctx.workspace, latency_lock=p.lock.with_suffix(".latency"),
                        variant=variant)
    result = decide(ctx.name, spec, baseline, [m])
    return m, next(d for d in result.decisions if d.name == variant.name)


run = quantize
