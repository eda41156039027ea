"""What a run must do, and the guard that keeps two runs of one pipeline apart.

``plan_run`` decides which stages are stale; ``finish_run`` records what ran. Staleness is
DVC's job (see quantflow.versioning.dvc): without a dvc.yaml entry every stage runs.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from quantflow.core.errors import PipelineBusy  # noqa: F401 - re-exported
from quantflow.core.results import VariantMetrics
from quantflow.core.specload import load_spec
from quantflow.steps import STAGES, StepContext


@dataclass
class Plan:
    ctx: StepContext
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


SPEC_SECTIONS = ("pipelines", "execution")  # the top-level keys of a spec


def pipeline_overrides(overrides: list[str], pipeline: str) -> list[str]:
    """Anchor relative overrides at the run's pipeline: `train.epochs=3` of a `digits` run is
    `pipelines.digits.train.epochs=3`, so a trigger need not repeat the pipeline's name.

    Keys starting with a spec section stay as they are; so does anything that is not
    `key=value`, for load_spec to reject in the user's own words.
    """
    out = []
    for o in overrides:
        key = o.split("=", 1)[0].strip()
        relative = "=" in o and key and key.split(".", 1)[0] not in SPEC_SECTIONS
        out.append(f"pipelines.{pipeline}.{o.lstrip()}" if relative else o)
    return out


def context(workspace: str | Path, spec_file: str, overrides: list[str], pipeline: str) \
        -> StepContext:
    """Load and validate the spec (raises SpecError) and pick one pipeline.

    ``overrides`` may be relative to ``pipeline`` (see ``pipeline_overrides``).
    """
    ws = Path(workspace).resolve()
    loaded = load_spec(ws / spec_file, pipeline_overrides(overrides, pipeline),
                       pipelines=[pipeline])
    if pipeline not in loaded.spec.pipelines:
        from quantflow.core.specload import Problem, SpecError

        raise SpecError([Problem(str(ws / spec_file), f"pipelines.{pipeline}",
                                 f"no such pipeline; have: {', '.join(loaded.spec.pipelines)}")])
    return StepContext(spec=loaded.spec, name=pipeline, workspace=ws)


def plan_run(workspace: str | Path, spec_file: str, overrides: list[str], pipeline: str,
             force: bool = False, planned: list[str] | None = None) -> Plan:
    """Ask DVC what is stale, unless ``planned`` (a ``Plan.describe()`` list) says already."""
    ctx = context(workspace, spec_file, overrides, pipeline)
    if planned is not None:
        variants = [s.split(":", 1)[1] for s in planned if s.startswith("quantize:")]
        stages = {s.split(":", 1)[0] for s in planned}
        return Plan(ctx, stages, variants)
    from quantflow.versioning import dvc

    stale = None if force else dvc.stale_stages(ctx, spec_file)
    if stale is None:  # no DVC tracking for this pipeline: run everything
        return Plan(ctx, set(STAGES), [v.name for v in ctx.pipeline.variants])
    return Plan(ctx, stale.stages, stale.variants)


def record(plan: Plan, steps: list[str]) -> None:
    """Record finished steps in DVC now (see quantflow.versioning.dvc.record_steps)."""
    from quantflow.versioning import dvc

    dvc.record_steps(plan, steps)


def finish_run(plan: Plan) -> list[str]:
    """Record the run in DVC (from this one process) and list the variants that failed."""
    from quantflow.versioning import dvc

    dvc.commit_run(plan)
    failed = []
    for v in plan.ctx.pipeline.variants:
        path = plan.ctx.paths.variant_metrics(v.name)
        if path.exists() and VariantMetrics.read(path).status == "failed":
            failed.append(v.name)
    return failed


def check_not_running(workspace: str | Path, spec_file: str, overrides: list[str],
                      pipeline: str) -> None:
    """Raise PipelineBusy now, before a flow run is even created, if another run holds it."""
    with pipeline_lock(workspace, spec_file, overrides, pipeline):
        pass


@contextmanager
def pipeline_lock(workspace: str | Path, spec_file: str, overrides: list[str], pipeline: str) \
        -> Iterator[None]:
    """Refuse a second concurrent run of the same pipeline with a clear message."""
    lock = context(workspace, spec_file, overrides, pipeline).paths.lock
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise PipelineBusy(f"pipeline {pipeline!r} is already running ({holder}); "
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
