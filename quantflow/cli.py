"""The `quantflow` command. Fast paths (validate, schema, --help, up-to-date runs) never import
TensorFlow or start Prefect.

Exit codes: 0 ok; 1 unexpected error (or the run's Prefect server died); 2 invalid spec, data,
model or usage; 3 the gate blocked every variant (nothing published); 4 published, but at least
one variant failed to convert or evaluate; 5 the pipeline is already being run by another
process; 130 interrupted (Ctrl-C); 143 terminated (SIGTERM).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from quantflow.core.errors import DvcError, Exit, PipelineBusy, QuantflowError, SpecError, UserError
from quantflow.core.specload import load_spec

if TYPE_CHECKING:
    from quantflow.core.request import RunRequest

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Declarative, versioned TFLite quantization pipelines.")
_WIDTH = None if sys.stdout.isatty() else 160  # logs and CI: do not squeeze tables to 80
err = Console(stderr=True, soft_wrap=True, width=_WIDTH)
out = Console(soft_wrap=True, width=_WIDTH)


SpecOpt = Annotated[Path, typer.Option("--spec", "-f", help="Spec file.")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", "-s", help="Override a spec value: dotted.key=value (repeatable).")]


def _fail_spec(exc: SpecError) -> None:
    for p in exc.problems:
        print(p, file=sys.stderr)
    err.print(f"[red]{len(exc.problems)} problem(s); nothing was run or written.[/red]")
    raise typer.Exit(Exit.SPEC)


def _deep(requests: list) -> int:
    """Print the deep check of each request (quantflow.domain.inspect); 2 on any problem."""
    from quantflow.domain.inspect import inspect_pipeline, render

    problems = 0
    for r in requests:
        found = inspect_pipeline(r.step)
        problems += len(found.problems)
        for line in render(found):
            out.print(line, markup=False)
    if problems:
        err.print(f"[red]{problems} problem(s) in the model or data; nothing was run.[/red]")
    return Exit.SPEC if problems else Exit.OK


@app.command()
def validate(file: Annotated[Path, typer.Argument(help="Spec file.")] = Path("pipelines.yaml"),
             set_: SetOpt = None,
             deep: Annotated[bool, typer.Option("--deep", help="Also load the model and the "
                             "data (imports a builder's module: runs its code).")] = False
             ) -> None:
    """Check a spec; exit 2 with one `file:line:col: key.path: message` line per problem."""
    from quantflow.core.request import load_requests

    try:
        loaded = load_spec(file, set_ or [])
        requests = load_requests(file, set_ or []) if deep else []
    except SpecError as exc:
        _fail_spec(exc)
    names = ", ".join(f"{n} ({len(p.variants)} variants)" for n, p in loaded.spec.pipelines.items())
    out.print(f"{file}: valid - {names}", markup=False)
    if deep:
        raise typer.Exit(_deep(requests))


@app.command("inspect")
def inspect_(pipeline: str, spec: SpecOpt = Path("pipelines.yaml"), set_: SetOpt = None) -> None:
    """Load one pipeline's model and data: signature, classes, kinds that apply, problems."""
    from quantflow.core.request import load_request

    try:
        request = load_request(spec.parent, spec.name, set_ or [], pipeline)
    except SpecError as exc:
        _fail_spec(exc)
    raise typer.Exit(_deep([request]))


@app.command()
def schema(output: Annotated[Path, typer.Option("--output", "-o")] =
           Path("pipelines.schema.json")) -> None:
    """Write the JSON Schema of pipelines.yaml (for editor completion)."""
    from quantflow.core.schema import json_schema

    output.write_text(json.dumps(json_schema(), indent=2) + "\n")
    out.print(f"wrote {output}", markup=False)


@app.command()
def step(stage: Annotated[str, typer.Argument(help="prepare|train|export|quantize|gate|publish")],
         pipeline: str,
         variant: Annotated[str | None, typer.Argument(help="Variant (quantize only).")] = None,
         spec: SpecOpt = Path("pipelines.yaml"), set_: SetOpt = None) -> None:
    """Run one stage of one pipeline in this process (what dvc.yaml stages call)."""
    import logging

    from quantflow.core.request import load_request

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    from quantflow.steps import STAGES

    if stage not in STAGES or (stage == "quantize") != (variant is not None):
        err.print(f"usage: quantflow step {{{'|'.join(STAGES)}}} PIPELINE [VARIANT]; "
                  "VARIANT is required for quantize only", markup=False)
        raise typer.Exit(Exit.SPEC)
    try:
        # Only the step's own loaders check its files: under `dvc repro` a team's stage that
        # writes `model.path` may run after prepare, which does not read it.
        request = load_request(spec.parent, spec.name, set_ or [], pipeline, check_files=False)
    except SpecError as exc:
        _fail_spec(exc)
    from importlib import import_module

    from quantflow.orchestration.plan import REPRO, STEP, pipeline_lock

    module = import_module(f"quantflow.steps.{stage}")
    try:  # the pipeline's lock, like `quantflow run`: either refuses while the other runs
        with pipeline_lock(request, REPRO if os.environ.get("DVC_STAGE") else STEP):
            result = module.run(request.step, variant) if variant else module.run(request.step)
    except (PipelineBusy, DvcError) as exc:  # busy; DVC's lock is corrupt
        err.print(str(exc), markup=False)
        raise typer.Exit(Exit.BUSY if isinstance(exc, PipelineBusy) else Exit.ERROR) from None
    except UserError as exc:  # bad data or model: the user's to fix, one line
        err.print(f"{stage} {pipeline}: {exc}", markup=False)
        raise typer.Exit(Exit.SPEC) from None
    out.print(f"{stage} {pipeline}{'/' + variant if variant else ''}: done", markup=False)
    code = getattr(module, "exit_code", None)
    if code is not None:
        raise typer.Exit(code(result))


@app.command()
def run(pipelines: Annotated[list[str] | None, typer.Argument(help="Pipelines (default all).")]
        = None, spec: SpecOpt = Path("pipelines.yaml"), set_: SetOpt = None,
        force: Annotated[bool, typer.Option(help="Re-run every stage.")] = False) -> None:
    """Run pipelines as Prefect flow runs; only stale stages run again."""
    from quantflow.core.request import request_from
    from quantflow.core.specload import parse_spec, validate

    try:
        parsed = parse_spec(spec)  # the one read of the file for this run
        have = list(validate(parsed, pipelines=[]).spec.pipelines)
        names = pipelines or have
        unknown = [n for n in names if n not in have]
        if unknown:
            err.print(f"unknown pipeline(s) {unknown}; {spec} has: {', '.join(have)}",
                      markup=False)
            raise typer.Exit(Exit.SPEC)
        # overrides may be relative to each pipeline; each checks its own data files
        requests = [request_from(parsed, set_ or [], name) for name in names]
    except SpecError as exc:
        _fail_spec(exc)
    raise typer.Exit(_run_until_stopped(requests, set_ or [], force))


def _run_until_stopped(requests: list[RunRequest], overrides: list[str], force: bool) -> int:
    """Ctrl-C, SIGTERM or a dead Prefect server: one line and 130, 143 or 1, within seconds
    (see quantflow.orchestration.shutdown), however far the run had got."""
    from quantflow.core.errors import Interrupted
    from quantflow.orchestration import shutdown
    from quantflow.orchestration.runner import run_pipelines

    with shutdown.handle_signals():
        code, raised = Exit.ERROR, None
        try:
            code = run_pipelines(requests, overrides, force=force, console=out)
        except Interrupted as exc:
            raised = exc
        except QuantflowError as exc:  # DVC busy or its lock corrupt, an unusable dvc.yaml
            err.print(str(exc), markup=False)
            code = Exit.BUSY if isinstance(exc, PipelineBusy) else \
                Exit.SPEC if isinstance(exc, UserError) else Exit.ERROR
        stop = shutdown.requested() or raised  # counts even if a library swallowed it
        if stop is not None:
            shutdown.announce(stop)
            return stop.code
    return code


@app.command()
def verify(folder: Annotated[str, typer.Argument(
        help="Registry root, pipeline folder or version folder; or an s3:// URL of one.")]
        = "registry") -> None:
    """Re-hash every published file against its manifest; exit 1 on any problem, or if the
    folder holds no manifest to check."""
    from quantflow.core.errors import RegistryError
    from quantflow.domain.objstore import is_url
    from quantflow.domain.verify import verify_folder

    try:
        if is_url(folder):
            from quantflow.domain.objverify import verify_url

            report = verify_url(folder)
        else:
            report = verify_folder(Path(folder))
    except (OSError, RegistryError) as exc:  # no such folder, nothing to check: one line
        err.print(f"{folder}: cannot verify: {exc}", markup=False)
        raise typer.Exit(Exit.ERROR) from None
    for p in report.problems:
        err.print(str(p), markup=False)
    if report.problems:
        raise typer.Exit(Exit.ERROR)
    out.print(f"{folder}: {report.target}, {report.versions} version(s), {report.files} "
              "file(s): every published file matches its manifest", markup=False)


@app.command()
def init(folder: Annotated[Path, typer.Argument(help="Project folder.")] = Path("."),
         model: Annotated[Path | None, typer.Option(
             help="Your model: a .keras/.h5 file or a SavedModel folder.")] = None,
         data: Annotated[Path | None, typer.Option(
             help="Your data: an .npz file (x, y) or a folder of IDX files.")] = None) -> None:
    """Start a project: git + DVC, .gitignore, a commented pipelines.yaml and dvc.yaml."""
    from quantflow.core.errors import QuantflowError, UserError
    from quantflow.orchestration.init import init_project

    try:
        done = init_project(folder, model=model, data=data)
    except SpecError as exc:
        _fail_spec(exc)
    except (UserError, QuantflowError) as exc:  # an existing spec, a bad --model, no git
        err.print(str(exc), markup=False)
        raise typer.Exit(Exit.SPEC if isinstance(exc, UserError) else Exit.ERROR) from None
    for line in done:
        out.print(line, markup=False)


@app.command()
def report(pipelines: Annotated[list[str] | None, typer.Argument(help="Default: all.")] = None,
           spec: SpecOpt = Path("pipelines.yaml"),
           open_: Annotated[bool, typer.Option("--open", help="Open it in a browser.")] = False
           ) -> None:
    """Re-render artifacts/<pipeline>/report.html from the artifacts; runs nothing."""
    from quantflow.orchestration.reportcmd import render_reports

    try:
        loaded = load_spec(spec, pipelines=[])  # the artifacts are read, not the data
    except SpecError as exc:
        _fail_spec(exc)
    raise typer.Exit(render_reports(loaded.spec, spec, pipelines or [], open_, out, err))


@app.command("dvc")
def dvc_yaml(spec: SpecOpt = Path("pipelines.yaml"),
             check: Annotated[bool, typer.Option(help="Exit 1 if dvc.yaml is out of date.")]
             = False) -> None:
    """Generate dvc.yaml (one stage per step of each pipeline) from the spec."""
    from quantflow.versioning.dvcgen import write_dvc_yaml

    try:
        loaded = load_spec(spec, pipelines=[])  # generating reads no data files
    except SpecError as exc:
        _fail_spec(exc)
    try:
        changed = write_dvc_yaml(loaded.spec, spec, check=check)
    except UserError as exc:  # a dvc.yaml that is not YAML, a stage of yours named like ours
        err.print(str(exc), markup=False)
        raise typer.Exit(Exit.SPEC) from None
    if check and changed:
        err.print("dvc.yaml is out of date: run `quantflow dvc` and commit it")
        raise typer.Exit(Exit.ERROR)
    out.print("dvc.yaml " + ("updated" if changed else "up to date"))


@app.command()
def deploy(pipelines: Annotated[list[str] | None, typer.Argument(help="Default: all.")] = None,
           spec: SpecOpt = Path("pipelines.yaml"),
           pool: Annotated[str, typer.Option(help="Process work pool.")] = "quantflow",
           prefect_yaml: Annotated[bool, typer.Option(
               "--prefect-yaml", help="Only write prefect.yaml (every pipeline) beside the spec, "
               "for `prefect deploy --all`.")] = False,
           source: Annotated[str, typer.Option(
               help="Where workers get the code: `workspace` (this folder, same machine) or "
               "`git` (a clone of the repository; data from the DVC remote).")] = "workspace",
           repo_url: Annotated[str | None, typer.Option(
               help="--source git: the repository (default: this clone's origin).")] = None,
           branch: Annotated[str | None, typer.Option(
               help="--source git: the branch (default: the current one).")] = None) -> None:
    """Create/update one Prefect deployment per pipeline, with its schedule."""
    from quantflow.orchestration import deploy as deployments
    from quantflow.orchestration import gitsource

    if source not in ("workspace", "git") or (source != "git" and (repo_url or branch)):
        err.print(f"--source is `workspace` or `git` (got {source!r}); --repo-url and "
                  "--branch need --source git", markup=False)
        raise typer.Exit(Exit.SPEC)

    if prefect_yaml and source == "git":
        err.print("--prefect-yaml writes workspace-source deployments only; deploy git-source "
                  "ones with `quantflow deploy --source git`", markup=False)
        raise typer.Exit(Exit.SPEC)
    if prefect_yaml and pipelines:
        err.print("--prefect-yaml describes every pipeline of the spec; name none")
        raise typer.Exit(Exit.SPEC)
    try:
        loaded = load_spec(spec, pipelines=[] if prefect_yaml else None)
    except SpecError as exc:
        _fail_spec(exc)
    if prefect_yaml:
        target = spec.parent / "prefect.yaml"
        target.write_text(deployments.prefect_yaml(loaded.spec, spec.name, pool,
                                                   workspace=spec.parent))
        out.print(f"wrote {target}", markup=False)
        raise typer.Exit(Exit.OK)
    try:
        git = gitsource.resolve(spec.parent, deployments.FLOW_FILE, repo_url, branch) \
            if source == "git" else None
    except UserError as exc:
        err.print(f"cannot deploy: {exc}", markup=False)
        raise typer.Exit(Exit.SPEC) from None
    raise typer.Exit(deployments.deploy_pipelines(loaded.spec, spec, pipelines or [], pool,
                                                  console=out, source=git))


@app.command()
def serve(port: Annotated[int, typer.Option(help="Prefect server port (127.0.0.1).")] = 4200,
          pool: Annotated[str, typer.Option(help="Process work pool.")] = "quantflow") -> None:
    """Start a Prefect server on 127.0.0.1 (SQLite) and a process worker; Ctrl-C stops both."""
    from quantflow.orchestration.deploy import serve as serve_local

    raise typer.Exit(serve_local(port, pool, console=out))


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover - `python -m quantflow.cli`
    main()
