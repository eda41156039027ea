"""dvcwrite: DVC's YAML writes are all-or-nothing in quantflow's process (a kill mid-commit
must not leave a truncated dvc.lock)."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantflow.versioning import dvcwrite


def test_a_write_that_dies_halfway_leaves_the_old_file(tmp_path: Path) -> None:
    from dvc.utils.serialize import _common, dump_yaml, load_yaml

    dvcwrite.install()
    lock = tmp_path / "dvc.lock"
    dump_yaml(lock, {"schema": "2.0", "stages": {"a": {"cmd": "true"}}})  # DVC's own writer
    before = lock.read_bytes()
    assert load_yaml(lock)["stages"]["a"]["cmd"] == "true"

    def dies_halfway(data, stream):
        stream.write("schema: '2.0'\nstages:\n  a:\n")
        stream.flush()
        raise KeyboardInterrupt  # as a kill would, after part of the file is out

    with pytest.raises(KeyboardInterrupt):
        _common._dump_data(lock, {}, dumper=dies_halfway)
    assert lock.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["dvc.lock"], "no temp file left"


def test_installing_twice_wraps_once() -> None:
    from dvc.utils.serialize import _common

    dvcwrite.install()
    first = _common._dump_data
    dvcwrite.install()
    assert _common._dump_data is first


def test_the_file_keeps_its_mode(tmp_path: Path) -> None:
    from dvc.utils.serialize import dump_yaml

    dvcwrite.install()
    lock = tmp_path / "dvc.lock"
    lock.write_text("schema: '2.0'\n")
    lock.chmod(0o664)
    dump_yaml(lock, {"schema": "2.0", "stages": {}})
    assert lock.stat().st_mode & 0o777 == 0o664
