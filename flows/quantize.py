"""The quantize-pipeline flow: prepare -> train -> export -> quantize (parallel) -> gate -> publish.

The flow parameters are pydantic models, so deployments validate them and the Prefect UI shows a
form: ``target`` (a deployment's defaults) and ``options`` (what a trigger changes). Which
stages run comes from ``quantflow.orchestration.plan`` (DVC decides what is stale).
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture
from prefect.utilities.annotations import quote
from pydantic import BaseModel, ConfigDict, Field

import tasks
from quantflow.core.results import PublishRecord
from quantflow.orchestration import daskrunner, shutdown
from quantflow.orchestration.daskrunner import Slots
from quantflow.orchestration.plan import Plan, finish_run, for_flow, pipeline_lock, plan_run, record
from quantflow.orchestration.pool import WarmPool
from quantflow.orchestration.taskrunner import submit_in_turn, task_runner, worker_pool
from quantflow.versioning import remote


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


def _quantize(plan: Plan, pool: WarmPool, after: list[PrefectFuture],
              converting: dict[str, PrefectFuture]) -> dict[str, str]:
    """Every stale variant, as many at a time as there are workers, QAT first (it trains, so
    it must not start last and leave a worker idle). As each finishes: one progress line, and a
    success is recorded in DVC at once; a failure never is (it must run again next time), and
    is returned with its reason for the gate and the summary. A variant in ``converting``
    (started beside export) is only evaluated, once its conversion is done."""
    ctx, execution = plan.request.step, plan.request.spec.execution
    order = sorted(plan.variants, key=lambda v: not ctx.pipeline.variant(v).trains)
    log, failed = get_run_logger(), {}

    def submit(name: str) -> PrefectFuture:
        return tasks.quantize.submit(ctx, name, execution.variant_timeout_seconds,
                                     converted=converting.get(name), wait_for=after)

    for i, (name, f) in enumerate(submit_in_turn(order, submit, pool.size), 1):
        if f.state.is_completed():
            record(plan, [f"quantize:{name}"])
        else:
            exc = f.result(raise_on_failure=False)
            failed[name] = getattr(exc, "error", None) or f.state.message or "failed"
        log.info("progress: %d/%d variants finished (%s %s)", i, len(order), name,
                 "failed" if name in failed else "done")
    return failed


def _tf_steps(plan: Plan, pool: WarmPool | Slots) -> dict[str, str]:
    """prepare, train, export in turn, then the variants: on this flow's task runner."""
    ctx, run = plan.request.step, plan.stages
    prev: list = []
    converting: dict[str, PrefectFuture] = {}
    for stage, task in (("prepare", tasks.prepare), ("train", tasks.train),
                        ("export", tasks.export)):
        if stage in run:
            if stage == "export" and isinstance(pool, WarmPool) and pool.size > 1:
                # the critical path (QAT's fine-tuning) starts now, not after export
                converting = {v: tasks.convert.submit(
                    ctx, v, plan.request.spec.execution.variant_timeout_seconds,
                    wait_for=prev) for v in plan.beside_export()}
            prev = [task.submit(ctx, wait_for=prev)]
            prev[0].result()  # raises if the step failed: the run is Failed
            record(plan, [stage])
    # export has finished (result() above). On Dask a wait_for future is a Dask dependency,
    # and the scheduler places a task only on workers that hold its dependencies: every
    # variant would queue on export's worker. There, the variants go without it.
    return _quantize(plan, pool, [] if isinstance(pool, Slots) else prev, converting)


@flow(name="tensorflow-steps-on-dask", validate_parameters=False)
def on_dask(plan: Plan) -> dict[str, str]:
    """The TensorFlow steps as Dask tasks (execution.task_runner: dask). A subflow because
    the task runner is fixed per flow and the spec is read inside the flow: `_wire` gives
    it prefect-dask's runner for the run's cluster (daskrunner.task_runner)."""
    daskrunner.ready(plan.request)
    return _tf_steps(plan, Slots(max(1, len(plan.variants))))


def _wire(plan: Plan, pool: WarmPool) -> tuple[PublishRecord | None, dict[str, str]]:
    ctx, run, execution = plan.request.step, plan.stages, plan.request.spec.execution
    if not plan.runs_tensorflow:
        failed: dict[str, str] = {}  # a gate-only run must not start any worker
    elif execution.task_runner == "dask":
        runner = daskrunner.task_runner(execution.dask)
        failed = on_dask.with_options(task_runner=runner)(quote(plan))
    else:
        pool.prespawn(max(1, len(plan.variants)))
        get_run_logger().info("%d worker processes (execution.max_workers: %d)",
                              len(pool.started), pool.size)
        failed = _tf_steps(plan, pool)
    # gate and publish are light (no TensorFlow): they run in the flow's own process, so a
    # gate-only change never spawns a worker or imports TensorFlow.
    if "gate" in run:
        tasks.gate(ctx, failed)
    return (tasks.publish(ctx) if "publish" in run else None), failed


@flow(name="quantize-pipeline", task_runner=task_runner(), validate_parameters=True)
def quantize_pipeline(target: Target,
                      options: RunOptions = RunOptions()) -> RunSummary:  # noqa: B008 - frozen
    """Run one pipeline. The worker processes are sized here, from the spec this run reads
    (execution.max_workers), so `quantflow run` and a deployment's run get the same pool."""
    log = get_run_logger()
    shutdown.reclaim()  # under `quantflow run`, SIGTERM takes the same path as Ctrl-C
    request, primed = for_flow(target.workspace, target.spec_file, options.overrides,
                               target.pipeline, options.force)
    with pipeline_lock(request), worker_pool(request.spec.execution.max_workers) as pool:
        plan = primed or plan_run(request, force=options.force)
        if not plan.stages:
            log.info("%s: up to date (inputs unchanged), nothing to do", target.pipeline)
            return RunSummary(pipeline=target.pipeline, ran=[], status="up_to_date",
                              message="inputs unchanged; nothing to do")
        log.info("%s: running %s", target.pipeline, ", ".join(plan.describe()))
        remote.pull_inputs(plan.request, plan.describe())  # a git-source run's inputs
        published, failed = _wire(plan, pool)
        failed_variants = finish_run(plan, failed)
        remote.push_records(plan.request, sorted(plan.recorded))  # its outputs and dvc.lock
    return RunSummary(pipeline=target.pipeline, ran=plan.describe(),
                      failed_variants=failed_variants,
                      status=published.status if published else "partial",
                      version=published.version if published else None,
                      message=published.message if published else "")
