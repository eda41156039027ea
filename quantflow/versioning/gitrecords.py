"""Where a git-source run's DVC records go: one commit, pushed to the branch it cloned.

A worker's clone is thrown away after its run, so dvc.lock and the git-kept records (metrics,
plot data, publish.json) must leave it or the next worker recomputes everything. They go back
as one commit on the deployment's branch, so `git pull && dvc pull` on any machine gets the
run's state, and the next run's clone plans against it. When the branch moved meanwhile (a
person pushed, another pipeline's run finished), the commit is rebased onto it and pushed
again; dvc.lock lists stages per pipeline, so runs of different pipelines rarely conflict, and
a conflict is an error that leaves the branch as it was.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from quantflow.core.errors import DvcError

ATTEMPTS = 3
IDENTITY = ("quantflow", "quantflow@localhost")  # only when the worker has no git identity


def _git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    if check and done.returncode != 0:
        raise DvcError(f"git {' '.join(args)} failed: "
                       f"{(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    return done


def _identity(cwd: Path) -> list[str]:
    have = _git(cwd, "config", "user.email", check=False).stdout.strip()
    return [] if have else ["-c", f"user.name={IDENTITY[0]}", "-c", f"user.email={IDENTITY[1]}"]


def _stage(cwd: Path, files: list[str]) -> bool:
    """`git add` the records that exist and git does not ignore; whether anything changed."""
    present = [f for f in dict.fromkeys(files) if (cwd / f).is_file()
               and _git(cwd, "check-ignore", "-q", f, check=False).returncode != 0]
    if present:
        _git(cwd, "add", "--", *present)
    return _git(cwd, "diff", "--cached", "--quiet", check=False).returncode != 0


def commit_and_push(workspace: Path, files: list[str], message: str) -> str | None:
    """Commit ``files`` (relative to the workspace) and push the commit to origin's branch of
    the same name; the commit id, or None when nothing changed. A DvcError when it cannot be
    pushed: the records stay only in this clone, and the next run recomputes what they say."""
    if not _stage(workspace, files):
        return None
    _git(workspace, *_identity(workspace), "commit", "-q", "-m", message)
    branch = _git(workspace, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    if branch.returncode != 0:
        raise DvcError("the clone is on a detached HEAD: dvc.lock was committed, not pushed")
    ref = branch.stdout.strip()
    for _ in range(ATTEMPTS):
        pushed = _git(workspace, "push", "-q", "origin", f"HEAD:refs/heads/{ref}", check=False)
        if pushed.returncode == 0:
            return _git(workspace, "rev-parse", "HEAD").stdout.strip()
        _git(workspace, "fetch", "-q", "origin", ref)
        # --autostash: the clone may hold edits it does not commit (a regenerated dvc.yaml)
        rebased = _git(workspace, *_identity(workspace), "rebase", "-q", "--autostash",
                       "FETCH_HEAD", check=False)
        if rebased.returncode != 0:
            _git(workspace, "rebase", "--abort", check=False)
            raise DvcError(f"dvc.lock not pushed: rebasing it onto origin/{ref} failed "
                           f"({(rebased.stderr or rebased.stdout).strip()})")
    raise DvcError(f"dvc.lock not pushed to origin/{ref} after {ATTEMPTS} attempts: "
                   f"{pushed.stderr.strip()}")
