"""`quantflow run`: plan first (cheap, no TensorFlow, no Prefect), then run the stale pipelines
as Prefect flow runs against PREFECT_API_URL or one shared ephemeral server."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from quantflow.core.errors import Exit, PipelineBusy, worst
from quantflow.core.request import RunRequest
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


def _checked(plans: list[Plan], console: Console, codes: list[int]) -> list[Plan]:
    """The deep check (quantflow.domain.inspect) of each pipeline whose prepare or train will
    run, before Prefect starts: a model that does not fit its data is one line and exit 2,
    not a failed flow run minutes later. Up-to-date stages are not checked (and import no
    TensorFlow)."""
    if not any(p.stages & {"prepare", "train"} for p in plans):
        return plans
    from quantflow.domain.inspect import inspect_pipeline

    ok = []
    for plan in plans:
        found = inspect_pipeline(plan.request.step) if plan.stages & {"prepare", "train"} \
            else None
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


def run_pipelines(requests: list[RunRequest], overrides: list[str], *, force: bool,
                  console: Console) -> int:
    """Run each requested pipeline; return the worst exit code."""
    codes: list[int] = []
    stale = _checked(_plans(requests, force, console, codes), console, codes)
    if not stale:
        return worst(codes)
    from flows.quantize import RunOptions, Target, quantize_pipeline
    from quantflow.orchestration.server import prefect_api
    from quantflow.orchestration.summary import print_summary

    with prefect_api() as url:
        console.print(f"Prefect API: {url}")
        for plan in stale:
            r = plan.request
            target = Target(pipeline=r.name, spec_file=r.spec_file, workspace=str(r.workspace))
            prime(plan, overrides, force)
            try:
                summary = quantize_pipeline(target, RunOptions(overrides=overrides, force=force))
            except PipelineBusy as exc:
                console.print(f"[red]{escape(str(exc))}[/red]")
                codes.append(Exit.BUSY)
                continue
            except Exception as exc:  # the flow run failed; Prefect has the traceback
                console.print(f"[red]{r.name}: run failed: {type(exc).__name__}: "
                              f"{escape(str(exc))}[/red]")
                codes.append(Exit.ERROR)
                continue
            print_summary(console, r, summary)
            codes.append(_exit_code(summary))
    return worst(codes)
