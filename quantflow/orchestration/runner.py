"""`quantflow run`: plan first (cheap, no TensorFlow, no Prefect), then run the stale pipelines
as Prefect flow runs against PREFECT_API_URL or one shared ephemeral server.

Each pipeline's run has a log file (runlog); the terminal gets one line per problem with its
path. A user's input problem raised inside a step (DataError, ModelError) ends as exit 2, like
a bad spec; anything else as exit 1.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from quantflow.core.errors import (
    Exit,
    Interrupted,
    PipelineBusy,
    QuantflowError,
    UserError,
    worst,
)
from quantflow.core.request import RunRequest
from quantflow.orchestration import runlog, shutdown
from quantflow.orchestration.plan import Plan, check_not_running, plan_run, prime

if TYPE_CHECKING:
    from quantflow.orchestration.pool import WarmPool


def _exit_code(summary: object) -> int:
    if getattr(summary, "status", "") == "blocked":
        return Exit.BLOCKED
    if getattr(summary, "failed_variants", None):
        return Exit.VARIANT_FAILED
    return Exit.OK


def uncached_note(requests: list[RunRequest]) -> str | None:
    """Outside a DVC repository nothing says what is stale: every run redoes every step and
    publishes again. Say so once, with the fix, instead of leaving a user to wonder why."""
    bare = sorted({str(r.workspace) for r in requests if not (r.workspace / ".dvc").is_dir()})
    if not bare:
        return None
    return (f"note: {', '.join(bare)} is not a DVC repository, so nothing is cached between "
            "runs and every run redoes every step; run `quantflow init` there (git + DVC, "
            ".gitignore, dvc.yaml) to fix it")


def _plans(requests: list[RunRequest], force: bool, console: Console,
           codes: list[int]) -> list[Plan]:
    """Refuse busy pipelines before planning (an in-flight run makes any plan meaningless),
    plan the others, and say which are up to date."""
    note = uncached_note(requests)
    if note:
        console.print(note, markup=False, style="yellow")
    plans = []
    for r in requests:
        try:
            check_not_running(r)
        except PipelineBusy as exc:
            console.print(f"[red]{escape(str(exc))}[/red]")
            codes.append(Exit.BUSY)
            continue
        plan = plan_run(r, force=force)
        if plan.describe():
            plans.append(plan)
        else:
            console.print(f"[green]{r.name}: up to date[/green] (inputs unchanged; nothing to do)")
    return plans


def _prestart(plan: Plan) -> WarmPool | None:
    """The first flow run's workers, started now so their TensorFlow import overlaps the
    server's start (the flow adopts them); None when that run needs no worker."""
    if not plan.runs_tensorflow:
        return None
    from quantflow.orchestration import taskrunner

    execution = plan.request.spec.execution
    if execution.task_runner == "dask":  # the steps run on the cluster: one worker, for the
        # deep check only (the flow, sized by max_workers, does not adopt it)
        return taskrunner.prestart(1, 1) if plan.stages & {"prepare", "train"} else None
    return taskrunner.prestart(execution.max_workers, max(1, len(plan.variants)))


def _checked(plans: list[Plan], console: Console, codes: list[int],
             pool: WarmPool | None) -> list[Plan]:
    """The deep check (quantflow.domain.inspect) of each pipeline whose prepare or train will
    run, before any flow starts: a model that does not fit its data is one line and exit 2,
    not a failed flow run minutes later. It runs in a warm worker (this process never imports
    TensorFlow), else here. Up-to-date stages are not checked (and import no TensorFlow)."""
    if not any(p.stages & {"prepare", "train"} for p in plans):
        return plans
    from quantflow.domain.inspect import inspect_pipeline
    from quantflow.orchestration import taskrunner

    def inspect(plan: Plan) -> Any:
        if pool is None:
            return inspect_pipeline(plan.request.step)
        return taskrunner.run_in(pool, inspect_pipeline, plan.request.step, heavy=True)

    ok = []
    for plan in plans:
        found = inspect(plan) if plan.stages & {"prepare", "train"} else None
        if found is not None and found.problems:
            for problem in found.problems:
                console.print(f"[red]{plan.request.name}: {escape(problem)}[/red]")
            hint = f"; tracebacks in {found.log}" if found.log else ""
            console.print(f"{plan.request.name}: not run (`quantflow inspect "
                          f"{plan.request.name}` shows the model and data{hint})", markup=False)
            codes.append(Exit.SPEC)
            continue
        ok.append(plan)
    return ok


def _run_one(plan: Plan, overrides: list[str], force: bool, console: Console,
             opened: Path | None = None) -> int:
    """One pipeline's flow run, with its own log (``opened``: already open); one terminal
    line if it fails. The flow sizes its own worker pool from the spec (flows/quantize.py)."""
    from flows.quantize import RunOptions, Target, quantize_pipeline
    from quantflow.orchestration.summary import print_summary

    r = plan.request
    target = Target(pipeline=r.name, spec_file=r.spec_file, workspace=str(r.workspace))
    with (nullcontext(opened) if opened else runlog.run_log(r.paths.logs)) as log:
        console.print(f"{r.name}: log {runlog.shown(log)}", markup=False)
        prime(plan, overrides, force)
        try:
            summary = quantize_pipeline(target, RunOptions(overrides=overrides, force=force))
        except PipelineBusy as exc:
            console.print(f"[red]{escape(str(exc))}[/red]")
            return Exit.BUSY
        except Interrupted as exc:  # the CLI prints the line; the log says where it hit
            runlog.log_exception(exc, f"{r.name}: {exc.message}")
            raise
        except UserError as exc:  # bad data or model found inside a step: the user's to fix
            runlog.log_exception(exc, f"{r.name}: {type(exc).__name__}")
            console.print(f"[red]{escape(r.name)}: {escape(runlog.one_line(str(exc)))}[/red]"
                          f"{escape(runlog.where())}")
            return Exit.SPEC
        except Exception as exc:  # the flow run failed; the log has the traceback
            runlog.log_exception(exc, f"{r.name}: run failed")
            what = str(exc) if isinstance(exc, QuantflowError) else \
                f"run failed: {type(exc).__name__}: {exc}"
            console.print(f"[red]{escape(r.name)}: {escape(runlog.one_line(what))}[/red]"
                          f"{escape(runlog.where())}")
            return Exit.ERROR
        print_summary(console, r, summary)
        return _exit_code(summary)


def run_pipelines(requests: list[RunRequest], overrides: list[str], *, force: bool,
                  console: Console) -> int:
    """Run each requested pipeline; return the worst exit code."""
    codes: list[int] = []
    if any(r.spec.execution.task_runner == "dask" for r in requests):
        from quantflow.orchestration.daskrunner import preflight

        preflight(requests)  # an unusable scheduler: exit 2 before anything is written
    stale = _plans(requests, force, console, codes)
    if not stale:
        return worst(codes)
    from quantflow.orchestration.server import prefect_api

    runlog.quiet_console()
    runlog.quiet_resource_tracker()
    from quantflow.orchestration import taskrunner

    head = stale[0]
    # An ephemeral server starts, and the first run's workers import TensorFlow, while the
    # deep check runs (in one of them); the first run's log is open for them from the start.
    with prefect_api() as api, runlog.run_log(head.request.paths.logs) as log:
        try:
            stale = _checked(stale, console, codes, _prestart(head))
            if not stale:
                return worst(codes)
            console.print(f"Prefect API: {api.url()}")
            for plan in stale:
                shutdown.check()
                codes.append(_run_one(plan, overrides, force, console,
                                      log if plan is head else None))
        finally:
            taskrunner.discard_early()
    return worst(codes)
