"""`quantflow deploy` and `quantflow serve`: scheduled retraining on a Prefect server.

One deployment per pipeline, named after it, runs flows/quantize.py:quantize_pipeline on a
process work pool. By default nothing is copied or cloned: ``flow.from_source(<workspace>,
...)`` gives the deployment a ``set_working_directory`` pull step, and the workspace's absolute
path is in the default parameters. With ``--source git`` (quantflow.orchestration.gitsource)
the worker clones the repository instead and the data comes from the DVC remote. Every deploy
writes the pipeline's schedule, or an empty list, so deleting a schedule from pipelines.yaml
deletes it from the deployment. A concurrency limit of one (ENQUEUE) makes a second trigger
wait for the first; the flow's file lock still guards runs started outside Prefect.
prefect.yaml is rendered from the same functions so that `prefect deploy --all` agrees with
`quantflow deploy`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from rich.console import Console

import flows
from quantflow.core.errors import UserError
from quantflow.core.spec import CronSchedule, PipelineSpec, Spec
from quantflow.orchestration import gitsource
from quantflow.orchestration.gitsource import GitSource

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

FLOW_NAME, FLOW_FUNCTION = "quantize-pipeline", "quantize_pipeline"
FLOW_FILE = Path(flows.__file__).resolve().with_name("quantize.py")
CONCURRENCY = {"limit": 1, "collision_strategy": "ENQUEUE"}
# A fixed anchor keeps interval runs on the same grid however often the pipeline is re-deployed.
INTERVAL_ANCHOR = datetime(2024, 1, 1, tzinfo=UTC)
SERVER_START_SECONDS = 180


def entrypoint(workspace: Path) -> str:
    """The flow as seen from the workspace: relative inside the project, else absolute."""
    try:
        path = FLOW_FILE.relative_to(workspace.resolve())
    except ValueError:
        path = FLOW_FILE
    return f"{path.as_posix()}:{FLOW_FUNCTION}"


def parameters(name: str, spec_file: str, workspace: str) -> dict[str, Any]:
    """Default flow parameters: the target only. A trigger's `options` (overrides, force) is
    another top-level parameter, so Prefect's merge by top-level name keeps the target."""
    return {"target": {"pipeline": name, "spec_file": spec_file, "workspace": workspace}}


def schedule_fields(pipeline: PipelineSpec) -> dict[str, Any] | None:
    """The pipeline's schedule as prefect.yaml spells it (also the kwargs of Cron/Interval)."""
    s = pipeline.schedule
    if s is None:
        return None
    if isinstance(s, CronSchedule):
        return {"cron": s.cron, "timezone": s.timezone}
    return {"interval": s.interval_seconds, "anchor_date": INTERVAL_ANCHOR.isoformat()}


def describe_schedule(pipeline: PipelineSpec) -> str:
    f = schedule_fields(pipeline)
    if f is None:
        return "no schedule"
    return f"cron '{f['cron']}' ({f['timezone']})" if "cron" in f else f"every {f['interval']} s"


def description(name: str, pipeline: PipelineSpec) -> str:
    return pipeline.description or f"quantflow pipeline {name}"


def build_deployment(spec: Spec, spec_path: Path, name: str, pool: str,
                     source: GitSource | None = None) -> RunnerDeployment:
    """The deployment of one pipeline, built without talking to a server.

    The flow is loaded from its file the way the worker will load it (from a clone of the
    repository for a git ``source``), so a flow that cannot be loaded fails here rather than
    at the first scheduled run.
    """
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
    from prefect.flows import Flow
    from prefect.schedules import Cron, Interval

    workspace = spec_path.resolve().parent
    pipeline = spec.pipelines[name]
    fields = schedule_fields(pipeline)
    schedules = [] if fields is None else [
        Cron(fields["cron"], timezone=fields["timezone"]) if "cron" in fields
        else Interval(fields["interval"], anchor_date=INTERVAL_ANCHOR)]
    if source is None:
        flow = Flow.from_source(source=str(workspace), entrypoint=entrypoint(workspace))
        here, env = str(workspace), None
    else:  # the clone is the working folder; the spec's folder is relative to its root
        flow = Flow.from_source(source=source.storage(), entrypoint=source.entrypoint)
        here, env = source.workspace, source.job_variables()
    return flow.to_deployment(
        name=name, work_pool_name=pool, schedules=schedules, job_variables=env,
        parameters=parameters(name, spec_path.name, here),
        concurrency_limit=ConcurrencyLimitConfig(**CONCURRENCY),
        description=description(name, pipeline), tags=["quantflow"])


def deploy_pipelines(spec: Spec, spec_path: Path, names: list[str], pool: str,
                     console: Console, source: GitSource | None = None) -> int:
    """Create or update one deployment per named pipeline (all when none are named); with a
    git ``source``, after checking that a worker elsewhere could start (exit 2 if not)."""
    names = names or list(spec.pipelines)
    unknown = [n for n in names if n not in spec.pipelines]
    if unknown:
        console.print(f"unknown pipeline(s) {unknown}; {spec_path} has: "
                      f"{', '.join(spec.pipelines)}", markup=False)
        return 2
    if source is not None:
        try:
            console.print(f"source: {gitsource.check(source, spec_path.parent)}", markup=False)
        except UserError as exc:
            console.print(f"cannot deploy: {exc}", markup=False)
            return 2
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    problem = pool_problem(url, pool, create=False) if url else (
        "PREFECT_API_URL is not set: start a server with `quantflow serve` and "
        "`export PREFECT_API_URL=http://127.0.0.1:4200/api`")
    if problem:
        console.print(f"cannot deploy: {problem}", markup=False)
        return 1
    for name in names:
        try:
            build_deployment(spec, spec_path, name, pool, source).apply()
        except Exception as exc:  # unreachable server, rejected payload: one line, exit 1
            console.print(f"{FLOW_NAME}/{name}: not deployed: {type(exc).__name__}: {exc}",
                          markup=False)
            return 1
        console.print(f"{FLOW_NAME}/{name}: deployed to pool {pool!r}, "
                      f"{describe_schedule(spec.pipelines[name])}", markup=False)
    console.print(f"run one now: prefect deployment run '{FLOW_NAME}/{names[0]}'"
                  " [--param options='{\"overrides\": [\"train.epochs=3\"]}']", markup=False)
    return 0


def prefect_yaml(spec: Spec, spec_file: str, pool: str = "quantflow",
                 workspace: Path = FLOW_FILE.parents[1]) -> str:
    """prefect.yaml for `prefect deploy --all`, run from `workspace`, the folder of the spec."""
    here = "{{ workspace.stdout }}"  # the absolute folder, from the build step below
    deployments = []
    for name, p in spec.pipelines.items():
        fields = schedule_fields(p)
        deployments.append({
            "name": name, "description": description(name, p), "tags": ["quantflow"],
            "entrypoint": entrypoint(workspace),
            "parameters": parameters(name, spec_file, here),
            "work_pool": {"name": pool}, "concurrency_limit": dict(CONCURRENCY),
            "schedules": [fields] if fields else []})
    doc = {"name": "quantflow",
           "build": [{"prefect.deployments.steps.run_shell_script": {
               "id": "workspace", "script": "pwd", "stream_output": False}}],
           "push": None,
           "pull": [{"prefect.deployments.steps.set_working_directory": {"directory": here}}],
           "deployments": deployments}
    head = (f"# Generated from {spec_file} by `quantflow deploy --prefect-yaml`; do not edit.\n"
            "# `prefect deploy --all` (from this folder) makes the deployments that\n"
            "# `quantflow deploy` makes. See docs/DEPLOY.md.\n")
    return head + yaml.safe_dump(doc, sort_keys=False, width=100)


# ----------------------------------------------------------------------------- serve
def pool_problem(url: str, pool: str, *, create: bool) -> str | None:
    """Why `pool` on the server at `url` cannot take our runs (None: it can)."""
    try:
        urllib.request.urlopen(f"{url}/health", timeout=10).close()
    except OSError as exc:
        return f"no Prefect API at {url} ({exc})"
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.workers.process import ProcessWorker

    with temporary_settings({PREFECT_API_URL: url}), get_client(sync_client=True) as client:
        try:
            kind = client.read_work_pool(pool).type
        except ObjectNotFound:
            if not create:
                return (f"no work pool {pool!r}: run `quantflow serve`, or "
                        f"`prefect work-pool create {pool} --type process`")
            client.create_work_pool(WorkPoolCreate(
                name=pool, type="process",
                base_job_template=ProcessWorker.get_default_base_job_template()))
            return None
    return None if kind == "process" else f"work pool {pool!r} is a {kind!r} pool, not process"


def _prefect(*args: str, env: dict[str, str]) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("prefect")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "prefect"]
    return subprocess.Popen([*cmd, *args], env=env)


def _wait_healthy(url: str, server: subprocess.Popen, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and server.poll() is None:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=5).close()
            return True
        except OSError:
            time.sleep(1)
    return False


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM (both shut down cleanly on it), then SIGKILL after 30 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve(port: int, pool: str, console: Console) -> int:
    """A single machine's stack: Prefect server (SQLite in PREFECT_HOME) and a process worker."""
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_API_URL": url}
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            console.print(f"port {port} is in use (another Prefect server?); choose --port",
                          markup=False)
            return 1
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs["server"] = _prefect("server", "start", "--host", "127.0.0.1", "--port", str(port),
                                   env=env)
        if not _wait_healthy(url, procs["server"], SERVER_START_SECONDS):
            console.print(f"the Prefect server did not come up on {url}", markup=False)
            return 1
        problem = pool_problem(url, pool, create=True)
        if problem:
            console.print(f"cannot serve: {problem}", markup=False)
            return 1
        procs["worker"] = _prefect("worker", "start", "--pool", pool, "--type", "process",
                                   env=env)
        console.print(f"Prefect UI http://127.0.0.1:{port}, worker on process pool {pool!r}.\n"
                      f"In another shell: export PREFECT_API_URL={url}; quantflow deploy\n"
                      "Ctrl-C stops both.", markup=False)
        while all(p.poll() is None for p in procs.values()):
            time.sleep(1)
        dead = next(n for n, p in procs.items() if p.poll() is not None)
        console.print(f"the {dead} exited ({procs[dead].returncode}); stopping", markup=False)
        return 1
    except KeyboardInterrupt:
        console.print("stopping the worker and the server", markup=False)
        return 0
    finally:
        for p in reversed(procs.values()):
            _stop(p)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
