"""What a run must do, and the guard that keeps two runs of one pipeline apart.

``plan_run`` decides which stages are stale; ``record`` and ``finish_run`` record what ran.
Staleness is DVC's job (quantflow.versioning.dvc): without a dvc.yaml entry every stage runs.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from quantflow.core.errors import PipelineBusy
from quantflow.core.request import RunRequest, load_request
from quantflow.core.results import VariantMetrics
from quantflow.orchestration import shutdown
from quantflow.steps import STAGES
from quantflow.versioning import dvc


@dataclass
class Plan:
    request: RunRequest
    stages: set[str]
    variants: list[str] = field(default_factory=list)
    recorded: set[str] = field(default_factory=set)  # steps already committed to DVC

    def describe(self) -> list[str]:
        out = []
        for s in STAGES:
            if s == "quantize":
                out += [f"quantize:{v}" for v in self.variants]
            elif s in self.stages:
                out.append(s)
        return out


def plan_run(request: RunRequest, force: bool = False) -> Plan:
    """Ask DVC (once) what is stale; everything when DVC does not track this run."""
    stale = None if force else dvc.stale_stages(request)
    if stale is None:
        return Plan(request, set(STAGES), [v.name for v in request.pipeline.variants])
    return Plan(request, stale.stages, stale.variants)


# Plans made by `quantflow run` in this process, handed to the flow it calls in-process, so
# the flow neither re-reads the spec nor asks DVC again. A deployment's flow run (another
# process) finds nothing here and plans for itself.
_PRIMED: dict[tuple[object, ...], Plan] = {}


def _key(workspace: str, spec_file: str, overrides: tuple[str, ...], pipeline: str,
         force: bool) -> tuple[object, ...]:
    return (os.path.realpath(workspace), spec_file, tuple(overrides), pipeline, force)


def prime(plan: Plan, overrides: list[str], force: bool) -> None:
    """Hand ``plan`` to the flow this process is about to call with these parameters."""
    r = plan.request
    _PRIMED[_key(str(r.workspace), r.spec_file, tuple(overrides), r.name, force)] = plan


def for_flow(workspace: str, spec_file: str, overrides: list[str], pipeline: str,
             force: bool) -> tuple[RunRequest, Plan | None]:
    """The request of this flow run and the plan `quantflow run` made for it, if it did;
    otherwise the spec is read once here and the caller plans under the pipeline lock."""
    primed = _PRIMED.pop(_key(workspace, spec_file, tuple(overrides), pipeline, force), None)
    if primed is not None:
        return primed.request, primed
    return load_request(workspace, spec_file, overrides, pipeline), None


def record(plan: Plan, steps: list[str]) -> None:
    """Record finished steps in DVC now, so a run killed later keeps them. Nothing is recorded
    once the run is interrupted (a killed worker's step looks finished to the flow), and an
    interrupt during the commit waits for its end."""
    shutdown.check()
    with shutdown.deferred():
        dvc.record_steps(plan.request, [s for s in steps if s not in plan.recorded])
    plan.recorded.update(steps)


def finish_run(plan: Plan) -> list[str]:
    """Record the rest of the run in DVC (from this one process); list the failed variants."""
    ran = [s for s in plan.describe() if s not in plan.recorded]
    shutdown.check()
    with shutdown.deferred():
        dvc.commit_run(plan.request, ran, push_targets=plan.describe()
                       if "publish" in plan.stages else None)
    plan.recorded.update(ran)
    failed = []
    for v in plan.request.pipeline.variants:
        path = plan.request.paths.variant_metrics(v.name)
        if path.exists() and VariantMetrics.read(path).status == "failed":
            failed.append(v.name)
    return failed


def check_not_running(request: RunRequest) -> None:
    """Raise PipelineBusy now, before a flow run is even created, if another run holds it."""
    with pipeline_lock(request):
        pass


@contextmanager
def pipeline_lock(request: RunRequest) -> Iterator[None]:
    """Refuse a second concurrent run of the same pipeline with a clear message."""
    lock = request.paths.lock
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise PipelineBusy(f"pipeline {request.name!r} is already running ({holder}); "
                               "wait for it to finish") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)
