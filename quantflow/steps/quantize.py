"""quantize: convert one variant and evaluate it. A failure is recorded, never raised, so one
broken variant cannot take the others (or the gate) down."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
import traceback
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from quantflow.core.errors import Exit
from quantflow.core.io import sha256_file
from quantflow.core.request import StepContext
from quantflow.core.results import VariantDecision, VariantMetrics
from quantflow.variants import ConvertInputs, converter

# Its own variant item (minus its gate, the gate's to read); QAT fine-tunes with `train`.
# model.signature: the signature of a user's SavedModel that converters convert.
READS = ("variants.{variant}", "-variants.{variant}.gate", "train", "evaluation",
         "model.signature")
log = logging.getLogger("quantflow.quantize")


def _test_faults(variant_name: str) -> None:
    """TEST-ONLY hooks (tests/integration/test_isolation.py); never set them otherwise.

    ``QUANTFLOW_TEST_KILL_VARIANT=<name>`` makes that variant's process SIGKILL itself, as a
    segfault or the OOM killer would; ``QUANTFLOW_TEST_HANG_VARIANT=<name>`` makes it hang, as
    a stuck conversion would. Both fire after the conversion wrote model.tflite, so a leftover
    model must not pass for a result.
    """
    if os.environ.get("QUANTFLOW_TEST_KILL_VARIANT") == variant_name:
        os.kill(os.getpid(), signal.SIGKILL)
    while os.environ.get("QUANTFLOW_TEST_HANG_VARIANT") == variant_name:
        time.sleep(3600)


@dataclass(frozen=True)
class Converted:
    """A variant converted and not yet evaluated: what its evaluation carries into metrics."""

    seconds: float
    sha256: str  # the bytes handed to evaluation; publish checks them


def _failed(ctx: StepContext, variant: Any, exc: BaseException) -> VariantMetrics:
    return record_failure(ctx, variant.name,
                          "".join(traceback.format_exception_only(exc)).strip())


def convert(ctx: StepContext, variant_name: str) -> Converted | VariantMetrics:
    """The conversion alone (the failed record, written, if it fails). It reads what
    dvcgen.conversion_reads says: for QAT with float I/O, nothing export writes, so the flow
    may run it beside export and evaluate it once export is done."""
    from quantflow.domain.savedmodel import refuse_calibrated_loop
    from quantflow.variants._common import SAVED_MODEL

    p, spec = ctx.paths, ctx.pipeline
    variant = spec.variant(variant_name)
    out = p.variant_tflite(variant_name)
    shutil.rmtree(p.variant_dir(variant_name), ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    inputs = ConvertInputs(trained=p.trained, saved_model=p.saved_model,
                           calibration=p.calibration, dataset=p.dataset, train=spec.train,
                           signature=spec.model.signature_key(), float_tflite=p.float_tflite,
                           judge=partial(judge, ctx, variant), calibrated=p.calibrated)
    start = time.perf_counter()
    try:
        if variant.needs_calibration and SAVED_MODEL <= variant.requires:  # the converter's
            refuse_calibrated_loop(p.saved_model, variant.kind)
        converter(variant.kind)(inputs, variant, out)
        converted = time.perf_counter() - start
        _test_faults(variant_name)
        return Converted(round(converted, 3), sha256_file(out))
    except Exception as exc:  # recorded as a failed variant; the others carry on
        return _failed(ctx, variant, exc)


def evaluate(ctx: StepContext, variant_name: str,
             converted: Converted | VariantMetrics) -> VariantMetrics:
    """Score a converted variant against export's baseline and write its metrics.json."""
    from quantflow.domain.evaluate import evaluate_tflite

    if isinstance(converted, VariantMetrics):  # its conversion failed, and said so
        return converted
    p, spec = ctx.paths, ctx.pipeline
    variant = spec.variant(variant_name)
    try:
        metrics = evaluate_tflite(p.variant_tflite(variant_name), p.dataset, spec.evaluation,
                                  name=variant.name, kind=variant.kind,
                                  baseline=VariantMetrics.read(p.baseline_metrics),
                                  float_outputs=p.float_outputs, workspace=ctx.workspace,
                                  latency_lock=p.lock.with_suffix(".latency"), variant=variant)
    except Exception as exc:  # recorded as a failed variant; the others carry on
        return _failed(ctx, variant, exc)
    metrics.convert_seconds, metrics.sha256 = converted.seconds, converted.sha256
    metrics.write(p.variant_metrics(variant_name))
    return metrics


def quantize(ctx: StepContext, variant_name: str) -> VariantMetrics:
    return evaluate(ctx, variant_name, convert(ctx, variant_name))


def record_failure(ctx: StepContext, variant_name: str, error: str) -> VariantMetrics:
    """The record of a failed variant: its conversion or evaluation raised (the step writes
    it), or its worker died or timed out, or the step itself raised (its folder unwritable,
    the disk full; the task writes it). Best effort: when even this cannot be written, the
    caller still has the returned value (the gate is told directly)."""
    variant = ctx.pipeline.variant(variant_name)
    metrics = VariantMetrics(name=variant.name, kind=variant.kind, status="failed",
                             error=error[-2000:])
    try:
        ctx.paths.variant_tflite(variant_name).unlink(missing_ok=True)  # no half-made model
        metrics.write(ctx.paths.variant_metrics(variant_name))
    except OSError as exc:
        log.warning("quantize %s/%s: could not record the failure on disk: %s", ctx.name,
                    variant_name, exc)
    return metrics


def exit_code(metrics: VariantMetrics) -> int:
    """`quantflow step quantize` (what `dvc repro` runs) exits 4 for a failed variant, so DVC
    does not record it as done: it runs again next time, as under `quantflow run`."""
    return Exit.VARIANT_FAILED if metrics.status == "failed" else Exit.OK


def judge(ctx: StepContext, variant: Any,
          candidate: Path) -> tuple[VariantMetrics, VariantDecision]:
    """A searching kind's candidate, measured as this step measures a variant and decided by
    the gate's own function, so that "passes" means what it means for the gate step."""
    from quantflow.domain.evaluate import evaluate_tflite
    from quantflow.domain.gate import decide

    p, spec = ctx.paths, ctx.pipeline
    baseline = VariantMetrics.read(p.baseline_metrics)
    m = evaluate_tflite(candidate, p.dataset, spec.evaluation, name=variant.name,
                        kind=variant.kind, baseline=baseline, float_outputs=p.float_outputs,
                        workspace=ctx.workspace, latency_lock=p.lock.with_suffix(".latency"),
                        variant=variant)
    result = decide(ctx.name, spec, baseline, [m])
    return m, next(d for d in result.decisions if d.name == variant.name)


run = quantize
