"""`quantflow deploy --source git`: deployments whose code comes from the project's git remote.

The worker clones the repository (Prefect's ``git_clone`` pull step, a fresh shallow clone in
the flow run's temporary working folder) and the flow takes its data from the DVC remote
(``QUANTFLOW_DATA=remote`` in the run's environment; quantflow.versioning.remote). Which code
runs: the clone's own ``flows/quantize.py`` when the repository is quantflow's (the flow file
is inside it), else ``flows.quantize`` from the quantflow installed on the worker; either way
``quantflow`` itself is imported as Python finds it on the worker (the clone's root first, when
it holds the package, then PYTHONPATH and the venv). Everything is checked here, before
anything is deployed: the repository and branch must answer ``git ls-remote``, and the DVC
remote must be reachable, because a worker elsewhere sees only what they hold.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantflow.core.errors import UserError
from quantflow.versioning.remotecfg import ENV, REMOTE, check_remote

MODULE_ENTRYPOINT = "flows.quantize.quantize_pipeline"


@dataclass(frozen=True)
class GitSource:
    url: str
    branch: str
    workspace: str  # the spec's folder, relative to the repository's root ("." at the root)
    entrypoint: str

    def storage(self) -> Any:
        from prefect.runner.storage import GitRepository

        return GitRepository(url=self.url, branch=self.branch)

    def job_variables(self) -> dict[str, Any]:
        return {"env": {ENV: REMOTE}}

    def pull_step(self) -> dict[str, Any]:
        return {"prefect.deployments.steps.git_clone": {"repository": self.url,
                                                       "branch": self.branch}}


def _git(cwd: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def resolve(workspace: Path, flow_file: Path, url: str | None, branch: str | None
            ) -> GitSource:
    """The source of the workspace's deployments: ``url`` (default: its ``origin``) at
    ``branch`` (default: the current one). A UserError names what is missing."""
    top = _git(workspace, "rev-parse", "--show-toplevel")
    if top is None:
        raise UserError(f"{workspace} is not in a git repository; --source git deploys what "
                        "is pushed to its remote")
    root = Path(top).resolve()
    url = url or _git(root, "remote", "get-url", "origin")
    branch = branch or _git(root, "symbolic-ref", "--quiet", "--short", "HEAD")
    if not url:
        raise UserError(f"{root} has no `origin` remote; pass --repo-url URL")
    if not branch:
        raise UserError(f"{root} is on a detached HEAD; pass --branch BRANCH")
    rel = workspace.resolve().relative_to(root).as_posix()
    try:
        entry = f"{flow_file.resolve().relative_to(root).as_posix()}:quantize_pipeline"
    except ValueError:  # a project of its own: the worker's installed flow
        entry = MODULE_ENTRYPOINT
    return GitSource(url, branch, rel, entry)


def check(source: GitSource, workspace: Path) -> str:
    """Whether a worker elsewhere can start: the branch exists at the URL and the DVC remote
    answers. Returns what will run; a UserError otherwise (the CLI exits 2)."""
    try:
        heads = subprocess.run(["git", "ls-remote", "--heads", source.url, source.branch],
                               capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise UserError(f"git repository {source.url} is unreachable: {exc}") from None
    if heads.returncode != 0:
        raise UserError(f"git repository {source.url} is unreachable: tried `git ls-remote`: "
                        f"{heads.stderr.strip().splitlines()[-1:] or heads.returncode}")
    if not heads.stdout.strip():
        raise UserError(f"branch {source.branch!r} is not on {source.url}; push it first")
    remote = check_remote(workspace)
    return f"git {source.url}@{source.branch}, data on {remote}"
