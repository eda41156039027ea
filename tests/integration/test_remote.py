"""Workers anywhere, for real: a bare git repository (file://), moto's S3 server as the DVC
remote and as the registry (`publish.registry: s3://...`), the session's Prefect server and
two `prefect worker` processes on one process pool, each in an empty folder of its own (cwd,
HOME, TMPDIR, PREFECT_HOME, DVC's site cache), so they share no files. Only 127.0.0.1 is used.

Worker A runs a git-source deployment from nothing; then only a gate threshold changes in git
and worker B (A stopped) must pull A's outputs, gate and publish without training or
quantizing, publishing the very bytes A produced.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml

from quantflow.domain import objstore
from quantflow.domain.objverify import verify_url
from tests.integration.test_deploy import _wait
from tests.s3server import AWS, dvc_project, moto_server
from tests.s3server import stop as _stop
from tests.tiny import tiny_spec, write_workspace

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

BIN = Path(sys.executable).parent
POOL, FLOW, BUCKET = "qf-remote", "quantize-pipeline", "qf-test"
HUMAN = ["-c", "user.name=test", "-c", "user.email=test@quantflow.invalid"]


def sh(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    exe = BIN / args[0]  # dvc, quantflow, prefect: this environment's
    args = (str(exe) if exe.exists() else args[0], *args[1:])
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, f"{' '.join(args)}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log", (BUCKET,)) as url:
        yield url


@dataclass
class Site:
    """The shared pieces: the git origin, a person's clone, the Prefect API."""

    origin: str
    work: Path
    api: str
    env: dict[str, str]
    endpoint: str  # moto: the DVC remote and the registry

    def client(self) -> Any:
        from prefect.client.orchestration import get_client

        return get_client(sync_client=True)


def _project(tmp: Path, endpoint: str) -> tuple[str, Path]:
    """A team's project (no quantflow code in it): the tiny pipeline, dvc.yaml, an S3 remote
    in the committed .dvc/config, pushed to a bare repository."""
    bare = tmp / "origin.git"
    sh(tmp, "git", "init", "-q", "--bare", "-b", "main", str(bare))
    work = tmp / "person"
    sh(tmp, "git", "clone", "-q", f"file://{bare}", str(work))
    spec = tiny_spec(variants=[{"name": "dr", "kind": "dynamic_range"},
                               {"name": "f16", "kind": "float16", "gate": {"min_accuracy": 0.5}}])
    spec["execution"]["max_workers"] = 1
    spec["pipelines"]["tiny"]["publish"] = {"registry": f"s3://{BUCKET}/registry",
                                            "alias": "latest"}
    write_workspace(work, spec)
    dvc_project(work, f"s3://{BUCKET}/dvc", endpoint)
    sh(work, "git", "add", "-A")
    sh(work, "git", *HUMAN, "commit", "-q", "-m", "tiny pipeline")
    sh(work, "git", "push", "-q", "origin", "main")
    return f"file://{bare}", work


def _worker(tmp: Path, name: str, api: str, endpoint: str) -> subprocess.Popen:
    """`prefect worker start` in an empty folder of its own; every per-user path inside it."""
    home = tmp / f"worker-{name}"
    for sub in ("tmp", "prefect", "dvc-site"):
        (home / sub).mkdir(parents=True)
    env = {"PATH": f"{BIN}{os.pathsep}/usr/bin:/bin", "HOME": str(home),
           "TMPDIR": str(home / "tmp"), "PREFECT_HOME": str(home / "prefect"),
           "DVC_SITE_CACHE_DIR": str(home / "dvc-site"), "PREFECT_API_URL": api,
           "PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PYTHONPATH": os.environ.get("PYTHONPATH", ""), "AWS_ENDPOINT_URL_S3": endpoint,
           **AWS}
    out = open(home / "worker.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", POOL,
                             "--type", "process", "--name", name], cwd=home, env=env,
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _online(site: Site, name: str) -> bool:
    with site.client() as c:
        return any(w.name == name and w.status.value == "ONLINE"
                   for w in c.read_workers_for_work_pool(POOL, offset=0, limit=10))


def _run(site: Site, seconds: float) -> UUID:
    done = subprocess.run([str(BIN / "prefect"), "deployment", "run", f"{FLOW}/tiny"],
                          env=site.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    run = UUID(re.search(r"UUID: ([0-9a-f-]{36})", done.stdout).group(1))

    def final() -> Any:
        with site.client() as c:
            state = c.read_flow_run(run).state
        return state if state and state.is_final() else None

    state = _wait(f"flow run {run}", final, seconds, every=2)
    assert state.is_completed(), f"{state.name}: {state.message}"
    return run


def _manifest(site: Site) -> dict[str, Any]:
    """The manifest the registry's alias names, read as any machine would: from S3."""
    fs, root = objstore.open_fs(f"s3://{BUCKET}/registry/tiny")
    return objstore.read_manifest(fs, root, objstore.resolve_alias(fs, root, "latest"))


@pytest.fixture
def site(tmp_path: Path, moto: str, prefect_harness: str,
         monkeypatch: pytest.MonkeyPatch) -> Site:
    for key, value in {**AWS, "AWS_ENDPOINT_URL_S3": moto}.items():
        monkeypatch.setenv(key, value)  # this process reads the registry too
    origin, work = _project(tmp_path, moto)
    env = {**os.environ, "PREFECT_API_URL": prefect_harness}
    sh(tmp_path, "prefect", "work-pool", "create", POOL, "--type", "process", "--overwrite",
       env=env)
    done = sh(work, "quantflow", "deploy", "tiny", "--source", "git", "--pool", POOL, env=env)
    assert f"git {origin}@main" in done and BUCKET in done, done
    return Site(origin, work, prefect_harness, env, moto)


def test_worker_b_gates_and_publishes_what_worker_a_built(site: Site, tmp_path: Path):
    start = time.monotonic()
    a = _worker(tmp_path, "A", site.api, site.endpoint)
    b = None
    try:
        _wait("worker A online", lambda: _online(site, "A"), 120)
        first = _run(site, 600)
        a_log = (tmp_path / "worker-A" / "worker.log").read_text()
        assert str(first) in a_log
        assert "tiny: running prepare, train, export, quantize:dr, quantize:f16, gate, publish" \
            in a_log, a_log[-3000:]
        built = _manifest(site)
        assert sorted(built["files"]) == ["dr.tflite", "f16.tflite"]
        _stop(a)

        # A pushed its DVC records to the branch: a person pulls them and edits one threshold.
        sh(site.work, "git", "pull", "-q", "origin", "main")
        assert "quantflow: tiny:" in sh(site.work, "git", "log", "-1", "--format=%s")
        spec = yaml.safe_load((site.work / "pipelines.yaml").read_text())
        spec["pipelines"]["tiny"]["variants"][1]["gate"]["min_accuracy"] = 0.999
        (site.work / "pipelines.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        sh(site.work, "git", *HUMAN, "commit", "-q", "-am", "f16: stricter gate")
        sh(site.work, "git", "push", "-q", "origin", "main")
        human = sh(site.work, "git", "rev-parse", "HEAD").strip()

        b = _worker(tmp_path, "B", site.api, site.endpoint)
        _wait("worker B online", lambda: _online(site, "B"), 120)
        second = _run(site, 300)
        b_log = (tmp_path / "worker-B" / "worker.log").read_text()
        assert str(second) in b_log and str(second) not in \
            (tmp_path / "worker-A" / "worker.log").read_text()
        assert "tiny: running gate, publish" in b_log, b_log[-3000:]
        assert "worker processes" not in b_log.split(str(second), 1)[1]  # no TensorFlow worker
        pulled = re.search(r"quantflow: pulled \d+ input\(s\) from DVC remote 'storage' "
                           r"\(s3://qf-test/dvc, endpointurl [^)]+\): (.+)", b_log)
        assert pulled and "artifacts/tiny/variants/dr" in pulled[1], b_log[-3000:]
        assert "artifacts/tiny/train" not in pulled[1]  # only what gate and publish read

        after = _manifest(site)
        assert after["version"] != built["version"] and after["git_commit"] == human
        assert sorted(after["files"]) == ["dr.tflite"]  # f16 now fails its gate
        assert after["files"]["dr.tflite"]["sha256"] == built["files"]["dr.tflite"]["sha256"]
        assert after["metrics"]["dr"]["sha256"] == built["metrics"]["dr"]["sha256"]
        report = verify_url(f"s3://{BUCKET}/registry")
        assert (report.versions, report.problems) == (2, [])
    finally:
        for proc in (a, b):
            if proc is not None:
                _stop(proc)
    print(f"two-worker round trip: {time.monotonic() - start:.0f} s")
