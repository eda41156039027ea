"""`quantflow deploy --source git` decisions without a server: which repository, branch,
entrypoint and workspace a deployment gets, the remote's probe address, and the refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from quantflow.core.errors import UserError
from quantflow.orchestration.deploy import FLOW_FILE
from quantflow.orchestration.gitsource import MODULE_ENTRYPOINT, check, resolve
from quantflow.versioning.remotecfg import ENV, REMOTE, Remote, enabled
from tests.tiny import write_workspace


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "models").mkdir(parents=True)
    git(root, "init", "-q", "-b", "trunk")
    return root


def test_defaults_are_origin_and_the_current_branch(repo: Path):
    git(repo, "remote", "add", "origin", "git@example.invalid:team/project.git")
    source = resolve(repo / "models", FLOW_FILE, None, None)
    assert (source.url, source.branch, source.workspace) == \
        ("git@example.invalid:team/project.git", "trunk", "models")
    assert source.entrypoint == MODULE_ENTRYPOINT  # the flow is not in this repository
    assert source.job_variables() == {"env": {ENV: REMOTE}}
    assert source.pull_step() == {"prefect.deployments.steps.git_clone": {
        "repository": "git@example.invalid:team/project.git", "branch": "trunk"}}
    given = resolve(repo, FLOW_FILE, "file:///srv/p.git", "release")
    assert (given.url, given.branch, given.workspace) == ("file:///srv/p.git", "release", ".")


def test_quantflows_own_repository_runs_the_clones_flow_file():
    root = FLOW_FILE.parents[1]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    source = resolve(root, FLOW_FILE, "file:///x.git", "main")
    assert source.entrypoint == "flows/quantize.py:quantize_pipeline"


def test_refusals_name_what_is_missing(repo: Path, tmp_path: Path):
    with pytest.raises(UserError, match="has no `origin` remote; pass --repo-url"):
        resolve(repo, FLOW_FILE, None, None)
    with pytest.raises(UserError, match="is not in a git repository"):
        resolve(tmp_path, FLOW_FILE, "file:///x.git", "main")
    bare = tmp_path / "bare.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    source = resolve(repo, FLOW_FILE, f"file://{bare}", "nope")
    with pytest.raises(UserError, match="branch 'nope' is not on file://"):
        check(source, repo)
    gone = resolve(repo, FLOW_FILE, f"file://{tmp_path}/missing.git", "main")
    with pytest.raises(UserError, match="missing.git is unreachable: tried `git ls-remote`"):
        check(gone, repo)


@pytest.mark.parametrize(("remote", "address"), [
    (Remote("s", "s3://bucket/dvc", "http://127.0.0.1:9000"), ("127.0.0.1", 9000)),
    (Remote("s", "s3://bucket/dvc", "https://minio.internal"), ("minio.internal", 443)),
    (Remote("s", "s3://bucket/dvc"), ("s3.amazonaws.com", 443)),
    (Remote("s", "ssh://ci@build.internal:2222/srv/dvc"), ("build.internal", 2222)),
    (Remote("s", "https://dvc.internal/store"), ("dvc.internal", 443)),
    (Remote("s", "/mnt/team/dvc"), None),
    (Remote("s", "~/.local/share/quantflow/dvc-remote"), None),
])
def test_the_probe_address_of_a_remote(remote: Remote, address):
    assert remote.address() == address


def test_data_comes_from_the_remote_only_when_asked(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(ENV, raising=False)
    assert not enabled()
    monkeypatch.setenv(ENV, "Remote")
    assert enabled()
    monkeypatch.setenv(ENV, "workspace")
    assert not enabled()


def test_a_bad_source_option_is_one_line_and_exit_2(tmp_path: Path):
    spec = write_workspace(tmp_path / "ws")
    quantflow = Path(sys.executable).with_name("quantflow")
    for args, says in ((["--source", "svn"], "--source is `workspace` or `git` (got 'svn')"),
                       (["--source", "git"], "is not in a git repository"),
                       (["--source", "git", "--prefect-yaml"], "--prefect-yaml writes")):
        done = subprocess.run([str(quantflow), "deploy", "--spec", str(spec), *args],
                              capture_output=True, text=True, timeout=120)
        lines = (done.stdout + done.stderr).strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and says in lines[0], (args, lines)


def test_a_project_without_dvc_is_told_so(repo: Path):
    from quantflow.versioning.remotecfg import check_remote

    with pytest.raises(UserError, match="is not a DVC repository: run `quantflow init`"):
        check_remote(repo)
