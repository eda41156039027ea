"""Deployments for real: `quantflow serve` (a `prefect server start` on a free loopback port plus a
process worker), `quantflow deploy`, `prefect deployment run`, and everything stopped after.

One stack per module (it takes ~30 s to start); PREFECT_HOME, and so the SQLite database, lives
in a temporary folder.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from quantflow.core.specload import load_spec
from quantflow.domain.registry import resolve_alias
from quantflow.domain.verify import verify
from tests.tiny import tiny_spec, write_workspace

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
POOL = "quantflow"  # the pool named in prefect.yaml
FLOW = "quantize-pipeline"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, check: Callable[[], Any], seconds: float, every: float = 2.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(every)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


@dataclass
class Stack:
    url: str
    env: dict[str, str]
    log: Path

    def cli(self, *args: str, cwd: Path | None = None, timeout: float = 300) \
            -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / args[0]), *args[1:]], env=self.env, cwd=cwd,
                              capture_output=True, text=True, timeout=timeout)

    @contextmanager
    def client(self) -> Iterator[Any]:
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: self.url}), \
                get_client(sync_client=True) as c:
            yield c


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Steps 1, 2 and 7: server + process pool + worker, and every process stopped after."""
    home = tmp_path_factory.mktemp("prefect_home")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": url,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_UI_ENABLED": "false",
           # a run waiting for the deployment's concurrency slot retries after 5 s, not 30 s
           "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "5",
           "PREFECT_WORKER_QUERY_SECONDS": "3"}
    log = home / "serve.log"
    with open(log, "w") as out:
        serve = subprocess.Popen([str(BIN / "quantflow"), "serve", "--port", str(port),
                                  "--pool", POOL], env=env, cwd=home, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    s = Stack(url, env, log)
    try:
        def worker_online() -> bool:
            assert serve.poll() is None, f"quantflow serve exited:\n{log.read_text()[-3000:]}"
            try:
                with s.client() as c:
                    workers = c.read_workers_for_work_pool(POOL, offset=0, limit=10)
                    return c.read_work_pool(POOL).type == "process" and any(
                        w.status.value == "ONLINE" for w in workers)
            except Exception:
                return False

        _wait("the server and an online process worker", worker_online, 300, every=3)
        yield s
    finally:
        pgid = serve.pid  # start_new_session: the group of serve, the server and the worker
        if serve.poll() is None:
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(pgid, signal.SIGKILL)
                serve.wait()
        deadline = time.monotonic() + 30
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(1)
        left = _group_alive(pgid)
        if left:
            os.killpg(pgid, signal.SIGKILL)
        assert serve.returncode == 0, log.read_text()[-3000:]
        assert not left, "quantflow serve left processes behind"
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, "the server still listens"


def _run(stack: Stack, name: str, options: dict[str, Any]) -> UUID:
    """`prefect deployment run` with `options` only: the deployment's `target` stays, as
    Prefect merges parameters by top-level name."""
    done = stack.cli("prefect", "deployment", "run", f"{FLOW}/{name}",
                     "--param", f"options={json.dumps(options)}")
    assert done.returncode == 0, done.stdout + done.stderr
    return UUID(re.search(r"UUID: ([0-9a-f-]{36})", done.stdout).group(1))


def _final_state(stack: Stack, run: UUID, seconds: float) -> Any:
    def final() -> Any:
        with stack.client() as c:
            state = c.read_flow_run(run).state
        return state if state and state.is_final() else None

    return _wait(f"flow run {run} to finish", final, seconds, every=3)


def _history(stack: Stack, run: UUID) -> list[Any]:
    with stack.client() as c:
        return c.read_flow_run_states(run)


def _deploy(stack: Stack, spec: Path, *names: str) -> str:
    done = stack.cli("quantflow", "deploy", *names, "--spec", str(spec), "--pool", POOL)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_deploy_trigger_with_override_then_bad_override_fails(stack: Stack, tmp_path: Path):
    """Steps 3-6. The bad run is triggered while the good one runs: it must wait (concurrency
    limit 1), then fail naming the field."""
    spec = write_workspace(tmp_path / "ws", tiny_spec())
    _deploy(stack, spec, "tiny")

    # A wrongly typed parameter never becomes a run: the server checks the schema.
    done = stack.cli("prefect", "deployment", "run", f"{FLOW}/tiny", "--param",
                     'options={"overrides": "train.epochs=3"}')
    assert done.returncode != 0 and "overrides" in done.stdout + done.stderr

    good = _run(stack, "tiny", {"overrides": ["train.epochs=3"]})  # relative to the pipeline
    with stack.client() as c:
        target = c.read_deployment_by_name(f"{FLOW}/tiny").parameters["target"]
        assert c.read_flow_run(good).parameters["target"] == target  # the default is kept
    assert target["workspace"] == str(spec.parent.resolve())

    def running() -> bool:
        with stack.client() as c:
            state = c.read_flow_run(good).state
        assert not state.is_final(), f"finished before the second trigger: {state}"
        return state.is_running()

    _wait("the first run to start", running, 300)
    bad = _run(stack, "tiny", {"overrides": ["train.epochs=0"]})

    state = _final_state(stack, good, 900)
    assert state.is_completed(), f"{state.name}: {state.message}\n{stack.log.read_text()[-4000:]}"
    registry = spec.parent / "registry"
    version = resolve_alias(registry / "tiny", "latest")
    manifest = json.loads((registry / "tiny" / version / "manifest.json").read_text())
    assert manifest["pipeline"] == "tiny" and manifest["version"] == version
    assert {f["variant"] for f in manifest["files"].values()} == {"dr", "i8"}
    with_override = load_spec(spec, ["pipelines.tiny.train.epochs=3"]).spec \
        .pipelines["tiny"].fingerprint()
    assert manifest["spec_sha256"] == with_override  # the override reached the run
    assert with_override != load_spec(spec).spec.pipelines["tiny"].fingerprint()
    assert verify(registry) == []

    state = _final_state(stack, bad, 600)
    assert state.is_failed(), f"{state.name}: {state.message}"
    assert "pipelines.tiny.train.epochs" in state.message
    assert "greater than or equal to 1" in state.message
    names = [s.name for s in _history(stack, bad)]
    assert "AwaitingConcurrencySlot" in names, names
    good_end = max(s.timestamp for s in _history(stack, good))
    bad_start = min(s.timestamp for s in _history(stack, bad) if s.is_running())
    assert bad_start >= good_end, "the two runs overlapped"
    assert resolve_alias(registry / "tiny", "latest") == version


def _schedules(stack: Stack, name: str) -> list[Any]:
    with stack.client() as c:
        return [s.schedule for s in c.read_deployment_by_name(f"{FLOW}/{name}").schedules]


def _renamed(name: str, **updates: object) -> dict:
    spec = tiny_spec(**updates)
    spec["pipelines"][name] = spec["pipelines"].pop("tiny")
    return spec


def test_schedule_follows_pipelines_yaml(stack: Stack, tmp_path: Path):
    ws = tmp_path / "ws"
    spec = write_workspace(ws, _renamed(
        "nightly", schedule={"cron": "0 3 * * 1", "timezone": "Europe/Paris"}))
    assert "cron '0 3 * * 1' (Europe/Paris)" in _deploy(stack, spec)
    (cron,) = _schedules(stack, "nightly")
    assert (cron.cron, cron.timezone) == ("0 3 * * 1", "Europe/Paris")
    with stack.client() as c:
        d = c.read_deployment_by_name(f"{FLOW}/nightly")
    assert d.global_concurrency_limit.limit == 1
    assert d.concurrency_options.collision_strategy.value == "ENQUEUE"
    assert d.parameters == {"target": {"pipeline": "nightly", "spec_file": "pipelines.yaml",
                                       "workspace": str(ws.resolve())}}
    assert d.pull_steps == [{"prefect.deployments.steps.set_working_directory":
                             {"directory": str(ws.resolve())}}]

    write_workspace(ws, _renamed("nightly", schedule={"interval_seconds": 3600}))
    _deploy(stack, spec)
    (interval,) = _schedules(stack, "nightly")  # replaced, not added
    assert interval.interval.total_seconds() == 3600

    write_workspace(ws, _renamed("nightly"))
    assert "no schedule" in _deploy(stack, spec)
    assert _schedules(stack, "nightly") == []


def test_server_schedules_runs_and_drops_them_with_the_schedule(stack: Stack, tmp_path: Path):
    ws = tmp_path / "ws"
    spec = write_workspace(ws, _renamed("weekly", schedule={"cron": "0 4 * * 0"}))
    _deploy(stack, spec)

    def scheduled() -> list[Any]:
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
        from prefect.client.schemas.sorting import FlowRunSort

        with stack.client() as c:
            return c.read_flow_runs(deployment_filter=DeploymentFilter(
                name=DeploymentFilterName(any_=["weekly"])),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=50)

    runs = _wait("the scheduler to create runs", scheduled, 60, every=5)
    assert all(r.state.is_scheduled() and r.auto_scheduled for r in runs)
    write_workspace(ws, _renamed("weekly"))
    _deploy(stack, spec)
    _wait("the scheduled runs to go", lambda: not scheduled(), 60)


def _snapshot(stack: Stack, name: str) -> dict[str, Any]:
    with stack.client() as c:
        d = c.read_deployment_by_name(f"{FLOW}/{name}")
    return {"entrypoint": d.entrypoint, "parameters": d.parameters,
            "pull_steps": d.pull_steps, "work_pool": d.work_pool_name, "tags": d.tags,
            "description": d.description,
            "limit": d.global_concurrency_limit.limit,
            "collision": d.concurrency_options.collision_strategy,
            "schedules": [s.schedule for s in d.schedules],
            "schema": d.parameter_openapi_schema, "enforce": d.enforce_parameter_schema}


def test_prefect_deploy_all_matches_quantflow_deploy(stack: Stack):
    """The committed prefect.yaml, deployed with `prefect deploy --all` from the project
    folder, gives the deployments `quantflow deploy` gives for pipelines.yaml."""
    names = list(load_spec(ROOT / "pipelines.yaml").spec.pipelines)
    _deploy(stack, ROOT / "pipelines.yaml")
    ours = {n: _snapshot(stack, n) for n in names}
    done = stack.cli("prefect", "--no-prompt", "deploy", "--all", cwd=ROOT)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert _snapshot(stack, names[0]) == ours[names[0]], output
    assert {n: _snapshot(stack, n) for n in names} == ours
