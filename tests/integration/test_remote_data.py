"""Data from the DVC remote, without TensorFlow: real git (a file:// origin), real DVC, moto's
S3 server. Placeholder bytes stand in for the artifacts (DVC's bookkeeping needs no model), so
each test takes seconds: what a fresh clone plans, what it pulls, what it pushes back, and the
bad inputs (an unreachable remote, a missing bucket, an object the remote lost)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from quantflow.core.errors import DvcError, UserError
from quantflow.core.request import load_request
from quantflow.orchestration.plan import Plan
from quantflow.steps import STAGES
from quantflow.versioning import remote
from quantflow.versioning.dvc import Stale, commit_run, stale_stages
from quantflow.versioning.remotecfg import ENV, REMOTE, check_remote
from tests.integration.test_dvc import fake_outputs
from tests.s3server import AWS, client, dvc_project, free_port, moto_server
from tests.tiny import tiny_spec, write_workspace

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
BUCKET = "qf-data"


def sh(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    exe = BIN / args[0]
    done = subprocess.run([str(exe) if exe.exists() else args[0], *args[1:]], cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    assert not check or done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    return done


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log", (BUCKET,)) as url:
        yield url


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory, s3: str) -> Iterator[str]:
    """A bare origin holding the one-variant tiny pipeline with an S3 remote, after a first
    run (placeholder outputs) recorded, pushed to S3 and its dvc.lock pushed to git. Shared by
    the module's tests (~20 s to make), which only clone it."""
    tmp_path = tmp_path_factory.mktemp("origin")
    with pytest.MonkeyPatch.context() as monkeypatch:
        _environment(monkeypatch, tmp_path)
        yield _first_run(tmp_path, s3)


def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path / "dvc-site"))
    for key, value in AWS.items():
        monkeypatch.setenv(key, value)
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "test")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "test@quantflow.invalid")
    monkeypatch.setenv(ENV, REMOTE)


def _first_run(tmp_path: Path, s3: str) -> str:
    bare = tmp_path / "origin.git"
    sh(tmp_path, "git", "init", "-q", "--bare", "-b", "main", str(bare))
    ws = tmp_path / "a"
    sh(tmp_path, "git", "clone", "-q", f"file://{bare}", str(ws))
    write_workspace(ws, tiny_spec(variants=[{"name": "dr", "kind": "dynamic_range"}]))
    dvc_project(ws, f"s3://{BUCKET}/{tmp_path.name}", s3)
    sh(ws, "git", "add", "-A")
    sh(ws, "git", "commit", "-q", "-m", "tiny")
    sh(ws, "git", "push", "-q", "origin", "main")
    fake_outputs(ws)
    request = load_request(ws, "pipelines.yaml", [], "tiny")
    steps = Plan(request, set(STAGES), ["dr"]).describe()
    commit_run(request, steps, push_targets=steps)
    assert remote.push_records(request, steps) is not None
    return f"file://{bare}"


def _clone(origin: str, where: Path, gate: float | None = None) -> Path:
    sh(where.parent, "git", "clone", "-q", "--depth", "1", origin, str(where))
    if gate is not None:
        spec = yaml.safe_load((where / "pipelines.yaml").read_text())
        spec["pipelines"]["tiny"]["gate"]["min_accuracy"] = gate
        (where / "pipelines.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return where


def test_a_fresh_clone_plans_pulls_and_pushes_back(origin: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch):
    ws = _clone(origin, tmp_path / "b")
    assert not (ws / "artifacts" / "tiny" / "train").exists()
    request = load_request(ws, "pipelines.yaml", [], "tiny")
    assert stale_stages(request) == Stale(set(), [])  # absent is not stale
    monkeypatch.delenv(ENV)
    assert stale_stages(request) == Stale(set(STAGES), ["dr"])  # as a local run sees it
    monkeypatch.setenv(ENV, REMOTE)

    ws = _clone(origin, tmp_path / "c", gate=0.7)
    request = load_request(ws, "pipelines.yaml", [], "tiny")
    assert stale_stages(request) == Stale({"gate", "publish"}, [])
    pulled = remote.pull_inputs(request, ["gate", "publish"])
    assert sorted(pulled) == ["artifacts/tiny/export/metrics.json",
                              "artifacts/tiny/prepare/info.json", "artifacts/tiny/variants/dr"]
    assert (ws / "artifacts/tiny/variants/dr/model.tflite").read_text() == \
        "placeholder dr\n"
    assert not (ws / "artifacts/tiny/train").exists()  # nothing gate and publish do not read
    for out in ("gate.json", "report.md", "metrics.json", "variants.csv", "latency.csv",
                "publish.json"):  # what gate and publish write, with new contents
        (ws / "artifacts/tiny" / out).write_text(f"gated at 0.7: {out}\n")
    commit_run(request, ["gate", "publish"], push_targets=["gate", "publish"])
    head = remote.push_records(request, ["gate", "publish"])
    log = sh(ws, "git", "log", "--format=%H %s", "origin/main").stdout.splitlines()
    assert log[0] == f"{head} quantflow: tiny: gate, publish"
    changed = sh(ws, "git", "show", "--name-only", "--format=", head).stdout.split()
    assert sorted(changed) == ["artifacts/tiny/latency.csv", "artifacts/tiny/metrics.json",
                               "artifacts/tiny/publish.json", "artifacts/tiny/variants.csv",
                               "dvc.lock"]


def test_records_are_rebased_onto_a_branch_that_moved(origin: str, tmp_path: Path):
    ws = _clone(origin, tmp_path / "b", gate=0.8)
    other = _clone(origin, tmp_path / "c")
    (other / "NOTES.md").write_text("a person pushed meanwhile\n")
    sh(other, "git", "add", "NOTES.md")
    sh(other, "git", "commit", "-q", "-m", "notes")
    sh(other, "git", "push", "-q", "origin", "main")
    request = load_request(ws, "pipelines.yaml", [], "tiny")
    remote.pull_inputs(request, ["gate", "publish"])
    for out in ("gate.json", "report.md", "metrics.json", "variants.csv", "latency.csv",
                "publish.json"):
        (ws / "artifacts/tiny" / out).write_text(f"gated at 0.8: {out}\n")
    commit_run(request, ["gate", "publish"], push_targets=["gate", "publish"])
    head = remote.push_records(request, ["gate", "publish"])
    log = sh(ws, "git", "log", "-2", "--format=%H %s", "origin/main").stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in log] == ["quantflow: tiny: gate, publish", "notes"]
    assert log[0].startswith(head)


def test_an_object_the_remote_lost_fails_the_pull_with_dvcs_message(
        origin: str, s3: str, tmp_path: Path):
    ws = _clone(origin, tmp_path / "b", gate=0.7)
    s3c, key = client(s3), _object_of(ws, "artifacts/tiny/export/metrics.json")
    kept = s3c.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    s3c.delete_object(Bucket=BUCKET, Key=key)
    try:
        request = load_request(ws, "pipelines.yaml", [], "tiny")
        with pytest.raises(DvcError) as caught:
            remote.pull_inputs(request, ["gate", "publish"])
    finally:
        s3c.put_object(Bucket=BUCKET, Key=key, Body=kept)
    message = str(caught.value)
    assert message.startswith("dvc pull of artifacts/tiny/export/metrics.json"), message
    assert "failed" in message and "artifacts/tiny/export/metrics.json" in message, message
    assert not (ws / "artifacts/tiny/gate.json").exists()


def test_quantflow_run_that_cannot_pull_publishes_nothing(origin: str, s3: str, tmp_path: Path,
                                                          prefect_harness: str):
    """End to end through the flow: one line naming the pull, and no registry at all. (A
    threshold no other test records: the first test pushes a dvc.lock gated at 0.7.)"""
    ws = _clone(origin, tmp_path / "b", gate=0.66)
    s3c, key = client(s3), _object_of(ws, "artifacts/tiny/variants/dr")
    kept = s3c.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    s3c.delete_object(Bucket=BUCKET, Key=key)
    try:
        done = sh(ws, "quantflow", "run", "tiny", check=False)
    finally:
        s3c.put_object(Bucket=BUCKET, Key=key, Body=kept)
    assert done.returncode == 1, done.stdout + done.stderr
    problems = [line for line in (done.stdout + done.stderr).splitlines() if "dvc pull of" in line]
    assert len(problems) == 1 and "Checkout failed" in problems[0], done.stdout
    assert not (ws / "registry").exists() and not (ws / "artifacts/tiny/gate.json").exists()


def _object_of(ws: Path, path: str) -> str:
    """The S3 key of a file's object: <prefix>/files/md5/<2 hex>/<30 hex>, its md5 from
    dvc.lock."""
    lock = yaml.safe_load((ws / "dvc.lock").read_text())
    md5 = next(o["md5"] for st in lock["stages"].values() for o in st.get("outs", [])
               if o["path"] == path)
    prefix = sh(ws, "dvc", "config", "remote.storage.url").stdout
    return f"{prefix.strip().split('/', 3)[3]}/files/md5/{md5[:2]}/{md5[2:]}"


def test_an_unreachable_remote_is_one_error_naming_its_address(origin: str, tmp_path: Path):
    ws = _clone(origin, tmp_path / "b")
    closed = free_port()
    sh(ws, "dvc", "remote", "modify", "--local", "storage", "endpointurl",
       f"http://127.0.0.1:{closed}")
    with pytest.raises(UserError, match=rf"DVC remote 'storage' \(s3://{BUCKET}/.+, endpointurl "
                       rf"http://127.0.0.1:{closed}\) is unreachable: tried a TCP connection "
                       rf"to 127.0.0.1:{closed} \(5 s timeout\): ConnectionRefusedError"):
        check_remote(ws)
    done = sh(ws, "quantflow", "deploy", "--source", "git", check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stdout.strip().splitlines()
    assert line.startswith("cannot deploy: DVC remote 'storage'") and str(closed) in line


def test_a_missing_bucket_is_found_before_any_work(origin: str, tmp_path: Path):
    ws = _clone(origin, tmp_path / "b")
    sh(ws, "dvc", "remote", "modify", "--local", "storage", "url", "s3://no-such-bucket/x")
    with pytest.raises(UserError, match="answered at 127.0.0.1:[0-9]+, but listing it failed: "
                       "bucket 'no-such-bucket' does not exist"):
        check_remote(ws)
