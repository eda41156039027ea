"""Prefect tasks: thin wrappers that log and call the plain step functions of quantflow.steps.

They run in threads of the flow's process; each TensorFlow step is sent to a warm worker
process (``in_worker``, quantflow.orchestration.taskrunner), so they take a picklable
StepContext and get small typed results back; models travel as files, never as objects.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from quantflow.core.errors import QuantflowError
from quantflow.core.request import StepContext
from quantflow.core.results import GateResult, PublishRecord, VariantMetrics
from quantflow.domain.units import label, show_drop, show_value
from quantflow.orchestration import runlog, shutdown
from quantflow.orchestration.pool import WorkerLost
from quantflow.orchestration.taskrunner import in_worker


def _key(pipeline: str, what: str) -> str:
    """Prefect artifact keys allow only lowercase letters, digits and dashes."""
    return f"{pipeline.lower().replace('_', '-')}-{what}"


@task(name="prepare")
def prepare(ctx: StepContext) -> None:
    from quantflow.steps import prepare as step

    info = in_worker(step.run, ctx, heavy=True)
    get_run_logger().info("prepare %s: %d train / %d test examples, %d calibration samples, "
                          "%d classes", ctx.name, info.train_examples, info.test_examples,
                          info.calibration_examples, info.num_classes)


@task(name="train")
def train(ctx: StepContext) -> None:
    from quantflow.steps import train as step

    info = in_worker(step.run, ctx, heavy=True)
    log = get_run_logger()
    if not info.trained:
        log.info("train %s: loaded %s (%d params; training skipped)", ctx.name,
                 getattr(ctx.pipeline.model, "path", "the model"), info.params)
        return
    final = ", ".join(f"{k} {v[-1]:.4f}" for k, v in info.history.items())
    log.info("train %s: trained in %.1fs, %d params, final %s", ctx.name, info.seconds,
             info.params, final)


@task(name="export")
def export(ctx: StepContext) -> VariantMetrics:
    from quantflow.steps import export as step

    m = in_worker(step.run, ctx, heavy=True)
    get_run_logger().info("export %s: float.tflite %d bytes, %s %s", ctx.name,
                          m.size_bytes or 0, label(m.metric), show_value(m.metric_value,
                                                                         m.percent))
    return m


class VariantFailed(RuntimeError):
    """Marks the Prefect task run Failed; the failure itself is already recorded on disk (or,
    when even that failed, handed to the gate by the flow)."""

    def __init__(self, variant: str, error: str) -> None:
        super().__init__(variant, error)
        self.variant, self.error = variant, error

    def __str__(self) -> str:
        return f"variant {self.variant!r} failed: {self.error}"


def _in_variant_worker(ctx: StepContext, variant: str, timeout_seconds: float | None,
                       fn: Any, *args: Any) -> Any:
    """One step function of a variant in a worker; a worker killed, timed out, or a step that
    could not record its own failure, gives the variant's failed record instead."""
    from quantflow.steps import quantize as step

    try:
        return in_worker(fn, ctx, variant, *args, timeout=timeout_seconds,
                         heavy=ctx.pipeline.variant(variant).trains)
    except Exception as exc:  # noqa: BLE001 - killed, timed out, or it could not record it
        if shutdown.requested() is not None:
            raise  # the stopped run killed its worker: not the variant's failure, no record
        # WorkerLost: no record of its own; StepError: the step raised (a full disk)
        return step.record_failure(ctx, variant, str(exc) if isinstance(
            exc, (WorkerLost, QuantflowError)) else f"{type(exc).__name__}: {exc}")


@task(name="convert", task_run_name="convert-{variant}")
def convert(ctx: StepContext, variant: str, timeout_seconds: float | None = None) -> Any:
    """A variant's conversion ahead of its evaluation (QAT beside export): the `quantize`
    task of the same variant takes the result and evaluates it."""
    from quantflow.steps import quantize as step

    return _in_variant_worker(ctx, variant, timeout_seconds, step.convert)


@task(name="quantize", task_run_name="quantize-{variant}")
def quantize(ctx: StepContext, variant: str, timeout_seconds: float | None = None,
             converted: Any = None) -> VariantMetrics:
    """Convert and evaluate one variant; only evaluate when ``converted`` (the `convert`
    task's result) is given."""
    from quantflow.steps import quantize as step

    if converted is None:
        m = _in_variant_worker(ctx, variant, timeout_seconds, step.run)
    elif isinstance(converted, VariantMetrics):  # the conversion failed and recorded it
        m = converted
    else:
        m = _in_variant_worker(ctx, variant, timeout_seconds, step.evaluate, converted)
    log = get_run_logger()
    if m.status == "failed":  # the one terminal line about it; the log has the full text
        log.error("quantize %s/%s failed: %s%s", ctx.name, variant,
                  runlog.one_line(m.error or "no error recorded"), runlog.where())
        raise VariantFailed(variant, m.error or "no error recorded")
    log.info("quantize %s/%s: %d bytes, %s %s (drop %s, positive = worse), p50 %.3f ms",
             ctx.name, variant, m.size_bytes or 0, label(m.metric),
             show_value(m.metric_value, m.percent),
             show_drop(m.metric_drop, m.percent, m.drop_low, m.drop_high),
             m.latency.p50_ms if m.latency else float("nan"))
    return m


@task(name="gate")
def gate(ctx: StepContext, failed: dict[str, str] | None = None) -> GateResult:
    from quantflow.steps import gate as step

    result = step.run(ctx, failed)
    log = get_run_logger()
    for d in result.decisions:
        if not d.passed and not d.checks:  # it failed before the gate and said so then
            log.info("gate %s/%s: FAIL - the variant failed (above)", ctx.name, d.name)
            continue
        (log.info if d.passed else log.warning)("gate %s/%s: %s - %s", ctx.name, d.name,
                                                "PASS" if d.passed else "FAIL",
                                                runlog.one_line(d.reason))
    create_table_artifact(key=_key(ctx.name, "gate"), table=step.table_rows(ctx),
                          description=f"quantflow variants and gate results for {ctx.name}")
    from quantflow.domain.report_page import markdown

    create_markdown_artifact(key=_key(ctx.name, "tradeoff"), markdown=markdown(ctx),
                             description=f"{ctx.name}: metric against size, gate thresholds")
    return result


@task(name="publish")
def publish(ctx: StepContext) -> PublishRecord:
    from quantflow.steps import publish as step

    shutdown.check()  # an interrupted run publishes nothing
    record = step.run(ctx)
    log = get_run_logger()
    if record.status == "published":
        log.info("publish %s: version %s at %s (%s)", ctx.name, record.version, record.path,
                 ", ".join(record.files))
        create_markdown_artifact(key=_key(ctx.name, "publish"),
                                 markdown=f"Published `{record.version}`: {record.files}")
    else:
        log.warning("publish %s: nothing published - %s", ctx.name, record.message)
    return record
