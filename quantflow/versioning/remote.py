"""Data from the DVC remote, for a worker that starts from a fresh git clone.

A deployment made with `quantflow deploy --source git` sets ``QUANTFLOW_DATA=remote`` for its
flow runs. Its clone holds dvc.yaml, dvc.lock and the git-kept records, but no artifacts, so
"missing" must not mean "stale": planning applies DVC's own `repro --allow-missing` rule
(``remotecfg.changed``: an absent output, or an absent dep whose lock entry an unchanged
upstream stage matches, is no change). Around the work the flow then calls ``pull_inputs``
(the remote is probed, then `dvc pull` of exactly the absent deps of the stages that will
run) and ``push_records`` (`dvc push` of what ran, then one git commit of dvc.lock and the
records, pushed to the branch the run cloned: quantflow.versioning.gitrecords). Nothing here
imports TensorFlow; DVC is imported inside functions.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from quantflow.core.errors import DvcError
from quantflow.core.request import RunRequest
from quantflow.versioning import gitrecords
from quantflow.versioning.dvc import _repo, _step_of, _tracked
from quantflow.versioning.remotecfg import check_remote, enabled

__all__ = ["check_remote", "pull_inputs", "push_records"]


def _missing_inputs(repo: Any, run: list[str]) -> list[str]:
    """Deps of the stages in ``run`` that are absent here and that a stage not in ``run``
    (or a `.dvc` file) produces: what the run reads but will not make."""
    produced = {o.fs_path: s.addressing for s in repo.index.stages for o in s.outs}

    def maker(path: str) -> str | None:  # the stage whose output is, or holds, ``path``
        return next((s for out, s in produced.items()
                     if path == out or path.startswith(out + os.sep)), None)

    wanted: dict[str, None] = {}
    for name in run:
        for stage in repo.stage.collect(name):
            for dep in stage.deps:
                made_by = maker(dep.fs_path)
                if made_by and made_by not in run and not os.path.exists(dep.fs_path):
                    wanted[os.path.relpath(dep.fs_path, repo.root_dir)] = None
    return list(wanted)


def pull_inputs(request: RunRequest, steps: list[str]) -> list[str]:
    """Before the work: probe the remote (one clear error naming its address), then pull what
    the planned ``steps`` read and no earlier step of this run makes. Returns the paths pulled.
    A pull that fails fails the run with DVC's own message, before any step starts."""
    stages = _tracked(request) if enabled() else None
    if stages is None:
        return []
    where = check_remote(request.workspace)
    run = [s.name for s in stages if _step_of(s) in steps]
    with _repo(request.workspace) as repo:
        targets = _missing_inputs(repo, run)
        if not targets:
            return []
        try:
            repo.pull(targets=targets)
        except Exception as exc:  # DVC raises many types; its message is what a person needs
            raise DvcError(f"dvc pull of {', '.join(targets)} failed: {exc}") from None
    print(f"quantflow: pulled {len(targets)} input(s) from {where}: {', '.join(targets)}",
          file=sys.stderr)
    return targets


def push_records(request: RunRequest, steps: list[str]) -> str | None:
    """After the work: push the outputs of ``steps`` (what this run recorded) to the DVC
    remote, then commit dvc.lock and the pipeline's git-kept records and push that commit to
    the branch this clone is on. The data goes first: a lock in git that names objects the
    remote lacks would make every other worker fail its pull. Returns the commit, if any."""
    stages = _tracked(request) if enabled() else None
    if stages is None:
        return None
    ran = [s for s in stages if _step_of(s) in steps]
    if ran:
        with _repo(request.workspace) as repo:
            try:
                repo.push(targets=[s.name for s in ran])
            except Exception as exc:
                raise DvcError(f"dvc push failed, so dvc.lock was not pushed either: "
                               f"{type(exc).__name__}: {exc}") from None
    files = ["dvc.lock", *(r for s in stages for r in s.records + s.metrics + s.plots)]
    return gitrecords.commit_and_push(Path(request.workspace), files,
                                      f"quantflow: {request.name}: {', '.join(steps)}")
