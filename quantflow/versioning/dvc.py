"""DVC integration: DVC owns what is stale, Prefect owns how it runs.

``stale_stages`` asks DVC once (one in-process ``dvc status`` of the pipeline's stages) and
adds everything downstream of a stale stage; ``commit_run`` records the stages that ran with
one ``dvc commit`` per stage from this single process (concurrent DVC commands in one
workspace collide on its lock), then pushes when publish ran (a clone fed from the remote:
quantflow.versioning.remote). A pipeline that dvc.yaml does
not know, or a run with ``--set`` overrides that pipelines.yaml does not say, is left to run
everything and is not recorded. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import chdir, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantflow.core.errors import DvcError, PipelineBusy
from quantflow.core.request import RunRequest
from quantflow.versioning import dvclock, dvcwrite
from quantflow.versioning.dvcfile import owned
from quantflow.versioning.dvcgen import Stage, pipeline_stages, write_dvc_yaml
from quantflow.versioning.dvcrecords import declared, md5_of  # noqa: F401 - md5_of re-exported
from quantflow.versioning.remotecfg import changed, enabled
from quantflow.versioning.toolchain import TOOLCHAIN_FILE


@dataclass
class Stale:
    stages: set[str]
    variants: list[str] = field(default_factory=list)
    # What DVC found stale upstream of quantflow's stages (a team's own stages), and whether
    # dvc.yaml holds quantflow's stages only: with neither, once this plan's stages are
    # committed DVC has nothing left to run here (cleanmark)
    upstream: list[str] = field(default_factory=list, compare=False)
    ours_only: bool = field(default=False, compare=False)


@contextmanager
def _repo(workspace: Path) -> Iterator[Any]:
    """The DVC repo, in this process, as its CLI sees it: DVC resolves stage names and paths
    from the working directory. Waits for DVC's lock (held by a `dvc status` in a shell, say)
    rather than failing, and mutes the per-stage INFO lines that would drown the run's log."""
    from dvc.lock import LockError
    from dvc.repo import Repo

    dvcwrite.install()  # a kill -9 mid-commit must not leave a truncated dvc.lock
    log = logging.getLogger("dvc")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        with chdir(workspace), Repo(".", _wait_for_lock=True) as repo:
            yield repo
    except LockError:  # a file of ours in another DVC command's rwlock entries
        raise PipelineBusy(dvclock.running_stages(workspace) or dvclock.BUSY_FILES) from None
    finally:
        log.setLevel(level)


def _tracked_spec_file(workspace: Path) -> str | None:
    """The spec file dvc.yaml was generated from: the one params file of quantflow's own
    stages besides the toolchain file (a team's own stages may read files of their own)."""
    files = {next(iter(entry)) for stage in declared(workspace).values() if owned(stage)
             for entry in stage.get("params", []) if isinstance(entry, dict)}
    files.discard(TOOLCHAIN_FILE)
    return files.pop() if len(files) == 1 else None


def _tracked(request: RunRequest) -> list[Stage] | None:
    """This pipeline's stages when DVC can own its staleness for this run, else None.

    A stale dvc.yaml (pipelines.yaml edited since `quantflow dvc`) is regenerated first: it is
    a pure function of pipelines.yaml, and DVC would otherwise track yesterday's keys; so is
    the toolchain file, or an upgrade of quantflow or TensorFlow would go unnoticed.
    """
    if _tracked_spec_file(request.workspace) != request.spec_file or not request.matches_file:
        return None  # no dvc.yaml for this spec, or --set overrides DVC's params don't describe
    file_spec = request.file_spec or request.spec
    if write_dvc_yaml(file_spec, request.workspace / request.spec_file):
        print(f"quantflow: regenerated dvc.yaml from the edited {request.spec_file}",
              file=sys.stderr)
    return pipeline_stages(file_spec, request.name)


def _with_downstream(stages: list[Stage], stale: set[str]) -> set[str]:
    """DVC reports a stage only for its own changes; whatever reads its outputs re-runs too."""
    out, produced = set(stale), set()
    for s in stages:  # DAG order
        if s.name in out or produced.intersection(s.deps):
            out.add(s.name)
            produced.update(s.produces)
    return out


def stale_stages(request: RunRequest) -> Stale | None:
    """What must run, per DVC; None when DVC does not track this pipeline for this run."""
    stages = _tracked(request)
    if stages is None:
        return None
    names = [s.name for s in stages]
    with _repo(request.workspace) as repo:
        # A clone fed from the DVC remote holds no artifacts: absent is not changed there.
        found = changed(repo, names) if enabled() else {
            key.rsplit(":", 1)[-1] for key in repo.status(targets=names, with_deps=True)}
    upstream = sorted(found - {s.name for s in stages})
    if upstream:  # a team's own stage that feeds ours (model.path, a download): DVC's to run
        print(f"quantflow: dvc.yaml stage(s) {', '.join(upstream)} that this pipeline reads "
              "from are stale; `quantflow run` does not run them: run `dvc repro` instead",
              file=sys.stderr)
    run = _with_downstream(stages, found)
    return Stale(stages={s.step for s in stages if s.name in run},
                 variants=[s.variant for s in stages if s.variant and s.name in run],
                 upstream=upstream,
                 ours_only=all(owned(s) for s in declared(request.workspace).values()))


def _step_of(stage: Stage) -> str:
    """The Plan.describe() name of a stage: "train", "quantize:int8", ..."""
    return f"quantize:{stage.variant}" if stage.variant else stage.step


def _commit(repo: Any, stages: list[Stage]) -> None:
    failed = []
    for s in stages:
        try:
            repo.commit(s.name, force=True)
        except Exception as exc:  # DVC raises many types; report them all at once
            failed.append(f"{s.name}: {type(exc).__name__}: {exc}")
    if failed:
        raise DvcError("dvc commit failed, so DVC will run these again:\n  "
                       + "\n  ".join(failed))


def record_steps(request: RunRequest, steps: list[str]) -> None:
    """Commit finished steps right away (from the one orchestrating process), so a run killed
    later keeps them and the next run does not redo them."""
    stages = _tracked(request)
    done = [s for s in stages or [] if _step_of(s) in steps]
    if done:
        with _repo(request.workspace) as repo:
            _commit(repo, done)


def commit_run(request: RunRequest, steps: list[str], push_targets: list[str] | None) -> None:
    """Record ``steps`` (what ran and was not recorded yet) in dvc.lock and the cache; then,
    after a publish, push the outputs of ``push_targets`` (the steps of this run)."""
    stages = _tracked(request)
    if stages is None:
        return
    with _repo(request.workspace) as repo:
        _commit(repo, [s for s in stages if _step_of(s) in steps])
        # What earlier runs produced was pushed by them; a clone fed from the remote pushes
        # in remote.push_records, where a failed push must stop the dvc.lock commit.
        if push_targets is not None and not enabled():
            problem = _push(repo, [s.name for s in stages if _step_of(s) in push_targets])
            if problem:
                print(f"quantflow: {problem}", file=sys.stderr)


def _push(repo: Any, targets: list[str]) -> str | None:
    from dvc.config import NoRemoteError

    try:
        repo.push(targets=targets)
    except NoRemoteError:
        return "no DVC remote configured; nothing pushed (see docs/DVC.md)"
    except Exception as exc:  # unreachable remote, missing cache, ...: publish still stands
        return f"dvc push failed: {type(exc).__name__}: {exc}"
    return None


def push_outputs(workspace: str | Path, targets: Iterable[str | Path]) -> str | None:
    """Push outputs (paths of DVC outputs, relative to the workspace) to the default remote;
    return a problem to report, or None.

    Inside `dvc repro` (DVC_STAGE is set) upstream outputs are already in the DVC cache, so
    this pushes now. Under `quantflow run` they enter the cache only in ``commit_run``, which
    pushes right after committing, so this does nothing there.
    """
    if not os.environ.get("DVC_STAGE"):
        return None
    ws = Path(workspace).resolve()
    with _repo(ws) as repo:
        return _push(repo, [os.path.relpath(ws / t, ws) for t in targets])
