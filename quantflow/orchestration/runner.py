"""`quantflow run`: plan first (cheap, no TensorFlow, no Prefect), then run the stale pipelines
as Prefect flow runs against PREFECT_API_URL or one shared ephemeral server."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from quantflow.orchestration.plan import PipelineBusy, check_not_running, plan_run


def _exit_code(summary: object) -> int:
    from quantflow.cli import EXIT_BLOCKED, EXIT_OK, EXIT_VARIANT_FAILED

    if getattr(summary, "status", "") == "blocked":
        return EXIT_BLOCKED
    if getattr(summary, "failed_variants", None):
        return EXIT_VARIANT_FAILED
    return EXIT_OK


def run_pipelines(spec: Path, overrides: list[str], names: list[str], *, force: bool,
                  console: Console) -> int:
    """Run each named pipeline; return the worst exit code."""
    from quantflow.cli import EXIT_BUSY, EXIT_ERROR

    workspace, spec_file = spec.parent.resolve(), spec.name
    codes: list[int] = []
    free = []
    for n in names:  # refuse before planning: an in-flight run makes any plan meaningless
        try:
            check_not_running(workspace, spec_file, overrides, n)
            free.append(n)
        except PipelineBusy as exc:
            console.print(f"[red]{exc}[/red]")
            codes.append(EXIT_BUSY)
    plans = {n: plan_run(workspace, spec_file, overrides, n, force=force) for n in free}
    stale = [n for n in free if plans[n].describe()]
    for n in sorted(set(free) - set(stale)):
        console.print(f"[green]{n}: up to date[/green] (inputs unchanged; nothing to do)")
    if not stale:
        return _worst(codes)
    import tasks
    from flows.quantize import RunOptions, Target, quantize_pipeline
    from quantflow.orchestration.server import prefect_api

    workers = plans[stale[0]].ctx.spec.execution.max_workers
    flow = quantize_pipeline.with_options(task_runner=tasks.task_runner(workers))

    with prefect_api() as url:
        console.print(f"Prefect API: {url}")
        for name in stale:
            target = Target(pipeline=name, spec_file=spec_file, workspace=str(workspace))
            options = RunOptions(overrides=overrides, force=force,
                                 planned=plans[name].describe())
            try:
                summary = flow(target, options)
            except PipelineBusy as exc:
                console.print(f"[red]{exc}[/red]")
                codes.append(EXIT_BUSY)
                continue
            except Exception as exc:  # the flow run failed; Prefect has the traceback
                console.print(f"[red]{name}: run failed: {type(exc).__name__}: {exc}[/red]")
                codes.append(EXIT_ERROR)
                continue
            from quantflow.orchestration.summary import print_summary

            print_summary(console, workspace, spec_file, overrides, summary)
            codes.append(_exit_code(summary))
    return _worst(codes)


def _worst(codes: list[int]) -> int:
    """An error outranks a refusal, which outranks a blocked gate, then a failed variant."""
    from quantflow.cli import EXIT_BLOCKED, EXIT_BUSY, EXIT_ERROR, EXIT_VARIANT_FAILED

    for code in (EXIT_ERROR, EXIT_BUSY, EXIT_BLOCKED, EXIT_VARIANT_FAILED):
        if code in codes:
            return code
    return 0
