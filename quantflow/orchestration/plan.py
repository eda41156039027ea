"""What a run must do (the guard that keeps two runs of one pipeline apart is lock.py's).

``plan_run`` decides which stages are stale; ``record`` and ``finish_run`` record what ran
and finished (a failed variant never: it did not finish, so it runs again next time).
Staleness is DVC's job (quantflow.versioning.dvc): without a dvc.yaml entry every stage runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from quantflow.core.request import RunRequest, load_request
from quantflow.core.results import VariantMetrics
from quantflow.orchestration import shutdown
from quantflow.orchestration.lock import (  # noqa: F401 - the guard's home is lock.py
    REPRO,
    RUN,
    STEP,
    check_not_running,
    pipeline_lock,
    release,
)
from quantflow.steps import STAGES
from quantflow.versioning import cleanmark, dvc
from quantflow.versioning.dvcgen import conversion_reads


@dataclass
class Plan:
    request: RunRequest
    stages: set[str]
    variants: list[str] = field(default_factory=list)
    recorded: set[str] = field(default_factory=set)  # steps already committed to DVC
    # DVC planned it and owns every stage of dvc.yaml: once all of describe() is committed,
    # DVC has nothing left to run (finish_run writes the cleanmark)
    settles: bool = False

    @property
    def runs_tensorflow(self) -> bool:
        """Whether any step of this plan needs a TensorFlow worker (gate and publish do not)."""
        return bool(self.variants or self.stages & {"prepare", "train", "export"})

    def beside_export(self) -> list[str]:
        """Stale variants that can convert while export runs: those that train (QAT, the
        critical path) and whose conversion reads nothing export writes
        (dvcgen.conversion_reads); their evaluation waits for export's baseline."""
        if "export" not in self.stages:
            return []
        p, pipe = self.request.paths, self.request.pipeline
        writes = {p.saved_model, p.float_tflite, p.baseline_metrics, p.float_outputs}
        return [v for v in self.variants if pipe.variant(v).trains
                and writes.isdisjoint(conversion_reads(p, pipe.variant(v)))]

    def describe(self) -> list[str]:
        out = []
        for s in STAGES:
            if s == "quantize":
                out += [f"quantize:{v}" for v in self.variants]
            elif s in self.stages:
                out.append(s)
        return out


def plan_run(request: RunRequest, force: bool = False) -> Plan:
    """Ask DVC (once) what is stale; everything when DVC does not track this run. DVC's last
    "nothing to do" stands while nothing it reads has changed (cleanmark: no DVC import, no
    status). A pipeline with nothing to run is let go at once (no flow run will take it over)."""
    if not force and cleanmark.holds(request):  # DVC said so, and nothing it reads changed
        release(request)
        return Plan(request, set())
    stale = None if force else dvc.stale_stages(request)
    if stale is None:
        return Plan(request, set(STAGES), [v.name for v in request.pipeline.variants])
    if not stale.stages:
        if not stale.upstream:  # DVC found nothing to do: remember its verdict
            cleanmark.write(request)
        release(request)
    return Plan(request, stale.stages, stale.variants,
                settles=stale.ours_only and not stale.upstream)


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


def finish_run(plan: Plan, failed: dict[str, str]) -> list[str]:
    """Record the rest of the run in DVC (from this one process), except the variants that
    failed: DVC must not call them done, so the next run tries them again. Return every failed
    variant: those the flow saw fail (``failed``) and those whose metrics say so. Nothing is
    recorded once the run is interrupted, and an interrupt during the commit waits for its end."""
    skip = {f"quantize:{name}" for name in failed}
    done = [s for s in plan.describe() if s not in skip]
    shutdown.check()
    with shutdown.deferred():
        dvc.commit_run(plan.request, [s for s in done if s not in plan.recorded],
                       push_targets=done if "publish" in plan.stages else None)
        if plan.settles and not skip:
            cleanmark.write(plan.request)
    plan.recorded.update(done)
    out = []
    for v in plan.request.pipeline.variants:
        path = plan.request.paths.variant_metrics(v.name)
        if v.name in failed or (path.exists() and VariantMetrics.read(path).status == "failed"):
            out.append(v.name)
    return out
