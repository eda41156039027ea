"""The quantize-pipeline flow: prepare -> train -> export -> quantize (parallel) -> gate -> publish.

The flow parameters are pydantic models, so deployments validate them and the Prefect UI shows a
form: ``target`` (a deployment's defaults) and ``options`` (what a trigger changes). Which
stages run comes from ``quantflow.orchestration.plan`` (DVC decides what is stale).
"""

from __future__ import annotations

import os

from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture, as_completed
from pydantic import BaseModel, ConfigDict, Field

import tasks
from quantflow.core.results import PublishRecord
from quantflow.orchestration import shutdown
from quantflow.orchestration.plan import Plan, finish_run, for_flow, pipeline_lock, plan_run, record
from quantflow.orchestration.taskrunner import task_runner


class Target(BaseModel):
    """Which pipeline of which spec file: a deployment's defaults, which triggers keep."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pipeline: str = Field(description="Pipeline name in the spec file.")
    spec_file: str = Field("pipelines.yaml", description="Spec file, relative to workspace.")
    workspace: str = Field(".", description="Project folder (holds the spec and dvc.yaml).")


class RunOptions(BaseModel):
    """How this one run differs from the spec. A separate parameter from ``Target`` because
    Prefect merges a trigger's parameters with a deployment's by top-level name only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    overrides: list[str] = Field(default_factory=list, description=(
        "key=value overrides, validated like the file; keys not starting with `pipelines.` or "
        "`execution.` are relative to the pipeline (`train.epochs=3`)."))
    force: bool = Field(False, description="Run every stage even if DVC says it is up to date.")


class RunSummary(BaseModel):
    pipeline: str
    ran: list[str]
    status: str  # up_to_date | published | blocked
    version: str | None = None
    failed_variants: list[str] = Field(default_factory=list)
    message: str = ""


def _propagate_api_url() -> None:
    """Spawned task workers read settings from the environment: give them this run's server."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if url:
        os.environ["PREFECT_API_URL"] = url


def _report_progress(plan: Plan, futures: dict[str, PrefectFuture]) -> None:
    """As each parallel variant finishes: one progress line, and record it in DVC (a failed
    variant is recorded too: its metrics file says why, and the gate fails it)."""
    names = {f.task_run_id: name for name, f in futures.items()}
    log = get_run_logger()
    for i, f in enumerate(as_completed(list(futures.values())), 1):
        f.wait()
        name = names.get(f.task_run_id, "?")
        outcome = "failed" if f.state.is_failed() else "done"
        log.info("progress: %d/%d variants finished (%s %s)", i, len(futures), name, outcome)
        record(plan, [f"quantize:{name}"])


def _prespawn_workers(plan: Plan) -> None:
    """Only when a TensorFlow step will run: a gate-only run must not start any worker."""
    from prefect.context import FlowRunContext

    runner = getattr(FlowRunContext.get(), "task_runner", None)
    if plan.variants or plan.stages & {"prepare", "train", "export"}:
        getattr(runner, "prespawn", lambda: None)()


def _wire(plan: Plan) -> PublishRecord | None:
    ctx, run = plan.request.step, plan.stages
    _prespawn_workers(plan)
    prev: list = []
    for stage, task in (("prepare", tasks.prepare), ("train", tasks.train),
                        ("export", tasks.export)):
        if stage in run:
            prev = [task.submit(ctx, wait_for=prev)]
            prev[0].result()  # raises if the step failed: the run is Failed
            record(plan, [stage])
    # Longest first (QAT trains), so it does not start last and leave a worker idle.
    order = sorted(plan.variants, key=lambda v: ctx.pipeline.variant(v).kind != "qat")
    variants = [tasks.quantize.submit(ctx, v, wait_for=prev) for v in order]
    _report_progress(plan, dict(zip(order, variants, strict=True)))
    # gate and publish are light (no TensorFlow): they run in the flow's own process, so a
    # gate-only change never spawns a worker or imports TensorFlow.
    if "gate" in run:
        tasks.gate(ctx)
    return tasks.publish(ctx) if "publish" in run else None


@flow(name="quantize-pipeline", task_runner=task_runner(2), validate_parameters=True)
def quantize_pipeline(target: Target,
                      options: RunOptions = RunOptions()) -> RunSummary:  # noqa: B008 - frozen
    log = get_run_logger()
    shutdown.reclaim()  # under `quantflow run`, SIGTERM takes the same path as Ctrl-C
    _propagate_api_url()
    request, primed = for_flow(target.workspace, target.spec_file, options.overrides,
                               target.pipeline, options.force)
    with pipeline_lock(request):
        plan = primed or plan_run(request, force=options.force)
        if not plan.stages:
            log.info("%s: up to date (inputs unchanged), nothing to do", target.pipeline)
            return RunSummary(pipeline=target.pipeline, ran=[], status="up_to_date",
                              message="inputs unchanged; nothing to do")
        log.info("%s: running %s", target.pipeline, ", ".join(plan.describe()))
        record = _wire(plan)
        failed = finish_run(plan)
    return RunSummary(pipeline=target.pipeline, ran=plan.describe(), failed_variants=failed,
                      status=record.status if record else "partial",
                      version=record.version if record else None,
                      message=record.message if record else "")
