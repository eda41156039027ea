"""Prefect tasks: thin wrappers that log and call the plain step functions of quantflow.steps.

They run in worker processes (ProcessPoolTaskRunner, spawn), so they take a picklable
StepContext and return small typed results; models travel as files, never as objects.
"""

from __future__ import annotations

import os
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.task_runners import ProcessPoolTaskRunner

from quantflow.core.results import GateResult, PublishRecord, VariantMetrics
from quantflow.steps import StepContext


def _key(pipeline: str, what: str) -> str:
    """Prefect artifact keys allow only lowercase letters, digits and dashes."""
    return f"{pipeline.lower().replace('_', '-')}-{what}"


def _die_with_parent() -> None:
    """If the run is killed (even with kill -9), its workers must not go on writing."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def warm_worker() -> None:
    """Process-pool initializer: pay the TensorFlow import once per worker, up front."""
    import logging

    from quantflow.core.tfenv import tf_modules

    logging.getLogger("quantflow").setLevel(logging.INFO)  # step progress reaches run logs
    _die_with_parent()
    tf, _ = tf_modules()
    threads = int(os.environ.get("QUANTFLOW_TF_THREADS", "0"))
    if threads:  # share the cores between workers instead of oversubscribing them
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    import ai_edge_litert.interpreter  # noqa: F401


@task(name="prepare")
def prepare(ctx: StepContext) -> None:
    from quantflow.steps import prepare as step

    info = step.run(ctx)
    get_run_logger().info("prepare %s: %d train / %d test examples, %d calibration samples, "
                          "%d classes", ctx.name, info.train_examples, info.test_examples,
                          info.calibration_examples, info.num_classes)


@task(name="train")
def train(ctx: StepContext) -> None:
    from quantflow.steps import train as step

    info = step.run(ctx)
    final = {k: round(v[-1], 4) for k, v in info.history.items()}
    get_run_logger().info("train %s: %s in %.1fs, %d params, final %s", ctx.name,
                          "trained" if info.trained else "loaded", info.seconds, info.params,
                          final)


@task(name="export")
def export(ctx: StepContext) -> VariantMetrics:
    from quantflow.steps import export as step

    m = step.run(ctx)
    get_run_logger().info("export %s: float.tflite %d bytes, accuracy %.4f", ctx.name,
                          m.size_bytes or 0, m.accuracy or 0.0)
    return m


class VariantFailed(RuntimeError):
    """Marks the Prefect task run Failed; the failure itself is already recorded on disk."""


@task(name="quantize", task_run_name="quantize-{variant}")
def quantize(ctx: StepContext, variant: str) -> VariantMetrics:
    from quantflow.steps import quantize as step

    m = step.run(ctx, variant)
    log = get_run_logger()
    if m.status == "failed":
        log.error("quantize %s/%s failed: %s", ctx.name, variant, m.error)
        raise VariantFailed(f"variant {variant!r} failed: {m.error}")
    log.info("quantize %s/%s: %d bytes, accuracy %.4f (drop %+.4f), p50 %.3f ms", ctx.name,
             variant, m.size_bytes or 0, m.accuracy or 0, -(m.accuracy_drop or 0),
             m.latency.p50_ms if m.latency else float("nan"))
    return m


@task(name="gate")
def gate(ctx: StepContext) -> GateResult:
    from quantflow.steps import gate as step

    result = step.run(ctx)
    log = get_run_logger()
    for d in result.decisions:
        (log.info if d.passed else log.warning)("gate %s/%s: %s - %s", ctx.name, d.name,
                                                "PASS" if d.passed else "FAIL", d.reason)
    create_table_artifact(key=_key(ctx.name, "gate"), table=step.table_rows(ctx),
                          description=f"quantflow variants and gate results for {ctx.name}")
    return result


@task(name="publish")
def publish(ctx: StepContext) -> PublishRecord:
    from quantflow.steps import publish as step

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



class QuickExitProcessPool(ProcessPoolTaskRunner):
    """The process pool the flow runs its tasks on (spawn; TensorFlow pre-imported).

    At exit it stops its idle workers instead of waiting for them: every task has reported its
    state by then and task logs travel through the parent, while a worker's teardown after
    TensorFlow (or a replacement worker importing TensorFlow again) costs seconds per run.
    """

    def prespawn(self) -> None:
        """Start every worker now, so all of them import TensorFlow while the first steps run.

        The executor otherwise spawns workers on demand: the second one would start (and
        spend ~10 s importing TensorFlow) only when the variants fan out, stealing CPU from
        them instead of helping.
        """
        executor = getattr(self, "_executor", None)
        if executor is not None:
            for _ in range(self._max_workers):
                executor.submit(int)  # a no-op; each submit with no idle worker spawns one

    def __exit__(self, *exc: Any) -> None:
        executor = getattr(self, "_executor", None)
        for proc in list(getattr(executor, "_processes", {}).values()):
            if proc.is_alive():
                proc.terminate()
        super().__exit__(*exc)


def task_runner(max_workers: int = 2) -> QuickExitProcessPool:
    """Workers split the machine's cores between them (TensorFlow would give each all)."""
    os.environ["QUANTFLOW_TF_THREADS"] = str(max(1, (os.cpu_count() or 1) // max_workers))
    return QuickExitProcessPool(max_workers=max_workers, initializer=warm_worker)
