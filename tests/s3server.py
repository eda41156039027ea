"""moto's standalone S3 server on a free 127.0.0.1 port: a real S3-protocol endpoint for DVC
remotes and the registry, started and stopped by the tests that need it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent
# moto accepts any credentials; boto3, s3fs and DVC all read these.
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
       "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen, grace: float = 60) -> None:
    """SIGTERM, then SIGKILL of its process group after ``grace`` seconds (it was started with
    start_new_session=True)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def client(url: str):  # noqa: ANN201 - a boto3 S3 client
    import boto3

    return boto3.client("s3", endpoint_url=url, aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=AWS["AWS_SECRET_ACCESS_KEY"],
                        region_name=AWS["AWS_DEFAULT_REGION"])


@contextmanager
def moto_server(log: Path, buckets: tuple[str, ...]) -> Iterator[str]:
    """Start moto_server, create ``buckets``, yield its URL; stop it after."""
    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        s3, deadline = client(url), time.monotonic() + 60
        while True:
            try:
                for bucket in buckets:
                    s3.create_bucket(Bucket=bucket)
                break
            except Exception:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"moto_server did not start: {log}"
                time.sleep(0.5)
        yield url
    finally:
        stop(proc, 30)


def dvc_project(ws: Path, remote: str, endpoint: str) -> None:
    """Make ``ws`` (a git checkout holding a pipelines.yaml) a DVC project like this one, whose
    default remote is ``remote`` (s3://...) on the server at ``endpoint``; the caller commits."""
    root = Path(__file__).resolve().parents[1]
    (ws / ".gitignore").write_text((root / ".gitignore").read_text())
    for args in (["dvc", "init", "-q"], ["dvc", "remote", "add", "-d", "storage", remote],
                 ["dvc", "remote", "modify", "storage", "endpointurl", endpoint],
                 ["quantflow", "dvc"]):
        done = subprocess.run([str(BIN / args[0]), *args[1:]], cwd=ws, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
