"""The registry on an object store, against moto's S3 server (fake .tflite bytes, no
TensorFlow): publish order, unchanged and blocked outcomes, an interrupted publish, and
`quantflow verify s3://...` finding tampering and a broken alias."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from quantflow.core.errors import IntegrityError
from quantflow.domain import objstore
from quantflow.domain.objverify import verify_url
from tests.s3server import AWS, client, moto_server
from tests.test_registry import EXTRA, make_gate

pytestmark = pytest.mark.integration

BUCKET = "qf-registry"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log", (BUCKET,)) as url:
        yield url


@pytest.fixture
def url(endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    for key, value in {**AWS, "AWS_ENDPOINT_URL_S3": endpoint}.items():
        monkeypatch.setenv(key, value)
    return f"s3://{BUCKET}/{tmp_path.name}"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for i, name in enumerate(("i8", "f16", "dr")):
        out[name] = tmp_path / f"{name}.tflite"
        out[name].write_bytes(b"TFL3" + bytes([i]) * (100 + i))
    return out


def _keys(endpoint: str, prefix: str) -> list[str]:
    listed = client(endpoint).list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return sorted(o["Key"].removeprefix(prefix) for o in listed)


def test_publish_writes_files_manifest_then_alias(url: str, files, endpoint: str):
    record = objstore.publish("digits", make_gate(["i8", "f16"]), files, url, "latest", EXTRA)
    assert record.status == "published" and record.path == f"{url}/digits/{record.version}"
    prefix = f"{url.removeprefix(f's3://{BUCKET}/')}/digits/"
    v = record.version
    assert _keys(endpoint, prefix) == sorted([f"{v}/f16.tflite", f"{v}/i8.tflite",
                                              f"{v}/manifest.json", "latest"])
    fs, root = objstore.open_fs(f"{url}/digits")
    manifest = objstore.read_manifest(fs, root, v)
    assert manifest["files"]["i8.tflite"]["sha256"] == \
        hashlib.sha256(files["i8"].read_bytes()).hexdigest()
    assert objstore.resolve_alias(fs, root, "latest") == v
    for target, where in (("registry", url), ("pipeline", f"{url}/digits"),
                          ("version", f"{url}/digits/{v}")):
        report = verify_url(where)
        assert (report.target, report.versions, report.files, report.problems) == \
            (target, 1, 2, [])

    again = objstore.publish("digits", make_gate(["i8", "f16"]), files, url, "latest", EXTRA)
    assert (again.status, again.version) == ("unchanged", v)
    blocked = objstore.publish("digits", make_gate([], passed=()), files, url, "latest", EXTRA)
    assert blocked.status == "blocked" and objstore.resolve_alias(fs, root, "latest") == v
    narrower = objstore.publish("digits", make_gate(["i8"], passed=("i8",)), files, url,
                                "latest", EXTRA)
    assert narrower.status == "published" and narrower.version != v
    assert objstore.list_versions(fs, root) == sorted([v, narrower.version])
    assert objstore.resolve_alias(fs, root, "latest") == narrower.version


def test_bytes_other_than_the_evaluated_ones_write_nothing(url: str, files, endpoint: str):
    with pytest.raises(IntegrityError):
        objstore.publish("digits", make_gate(["i8"]), files, url, "latest", EXTRA,
                         evaluated={"i8": "0" * 64})
    assert _keys(endpoint, url.removeprefix(f"s3://{BUCKET}/")) == []


def test_a_publish_interrupted_before_its_manifest_stays_invisible(
        url: str, files, monkeypatch: pytest.MonkeyPatch):
    """The crash itself is simulated (the only fault injected): the upload of the manifest
    raises, after the model files are stored."""
    first = objstore.publish("digits", make_gate(["i8"], passed=("i8",)), files, url, "latest",
                             EXTRA)
    real = objstore.open_fs

    def crashing(u: str):  # noqa: ANN202
        fs, root = real(u)
        put = fs.put_file

        def put_file(local: str, remote: str, **kw) -> None:  # noqa: ANN003
            if remote.endswith("/manifest.json"):
                raise ConnectionError("the worker died here")
            put(local, remote, **kw)

        fs.put_file = put_file
        return fs, root

    monkeypatch.setattr(objstore, "open_fs", crashing)
    with pytest.raises(ConnectionError):
        objstore.publish("digits", make_gate(["i8", "f16"]), files, url, "latest", EXTRA)
    monkeypatch.setattr(objstore, "open_fs", real)
    fs, root = objstore.open_fs(f"{url}/digits")
    assert len(fs.ls(root)) == 3  # first's version, the unfinished prefix, the alias
    assert objstore.list_versions(fs, root) == [first.version]
    assert objstore.resolve_alias(fs, root, "latest") == first.version
    assert verify_url(url).problems == []


def test_quantflow_verify_finds_tampering_and_a_broken_alias(url: str, files, endpoint: str):
    record = objstore.publish("digits", make_gate(["i8"], passed=("i8",)), files, url,
                              "latest", EXTRA)
    key = f"{url.removeprefix(f's3://{BUCKET}/')}/digits"
    s3 = client(endpoint)
    s3.put_object(Bucket=BUCKET, Key=f"{key}/{record.version}/i8.tflite", Body=b"evil")
    s3.put_object(Bucket=BUCKET, Key=f"{key}/stable",
                  Body=json.dumps({"version": "20990101T000000.000000Z-abcdef"}).encode())
    done = subprocess.run([str(BIN / "quantflow"), "verify", url], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith(f"tampered: {BUCKET}/{key}/{record.version}/i8.tflite"), lines
    assert lines[1].startswith("broken_alias: ") and "stable" in lines[1], lines
    missing = subprocess.run([str(BIN / "quantflow"), "verify", f"{url}/nothing"],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "nothing to verify" in missing.stderr
