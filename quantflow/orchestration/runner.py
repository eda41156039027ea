"""`quantflow run`: plan first (cheap, no TensorFlow, no Prefect), then run the stale pipelines
as Prefect flow runs against PREFECT_API_URL or one shared ephemeral server.

Each pipeline's run has a log file (runlog); the terminal gets one line per problem with its
path. A user's input problem raised inside a step (DataError, ModelError) ends as exit 2, like
a bad spec; anything else as exit 1.
"""

from __future__ import annotations

from typing import Any

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


def _exit_code(summary: object) -> int:
    if getattr(summary, "status", "") == "blocked":
        return Exit.BLOCKED
    if getattr(summary, "failed_variants", None):
        return Exit.VARIANT_FAILED
    return Exit.OK


def _plans(requests: list[RunRequest], force: bool, console: Console,
           codes: list[int]) -> list[Plan]:
    """Refuse busy pipelines before planning (an in-flight run makes any plan meaningless),
    plan the others, and say which are up to date."""
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


def _run_one(flow: Any, plan: Plan, overrides: list[str], force: bool,
             console: Console) -> int:
    """One pipeline's flow run, with its own log; one terminal line if it fails."""
    from flows.quantize import RunOptions, Target
    from quantflow.orchestration.summary import print_summary

    r = plan.request
    target = Target(pipeline=r.name, spec_file=r.spec_file, workspace=str(r.workspace))
    with runlog.run_log(r.paths.logs) as log:
        console.print(f"{r.name}: log {runlog.shown(log)}", markup=False)
        prime(plan, overrides, force)
        try:
            summary = flow(target, RunOptions(overrides=overrides, force=force))
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
    stale = _plans(requests, force, console, codes)
    if not stale:
        return worst(codes)
    from flows.quantize import quantize_pipeline
    from quantflow.orchestration.server import prefect_api
    from quantflow.orchestration.taskrunner import task_runner

    runlog.quiet_console()
    runlog.quiet_resource_tracker()
    workers = stale[0].request.spec.execution.max_workers
    flow = quantize_pipeline.with_options(task_runner=task_runner(workers))
    with prefect_api() as url:
        console.print(f"Prefect API: {url}")
        for plan in stale:
            shutdown.check()
            codes.append(_run_one(flow, plan, overrides, force, console))
    return worst(codes)
