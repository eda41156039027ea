"""Bad data is refused before training, with a message that says what is wrong and where.

Every case writes a real file in tmp_path and goes through the same functions the prepare step
calls (load_raw -> split -> calibration_samples); nothing is mocked.
"""

from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from quantflow.core.spec import CalibrationSpec, IdxDataset, NpzDataset
from quantflow.domain import data
from quantflow.domain.data import DataError


def digits_like(n: int = 40, classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, 8, 8), dtype=np.float32), np.arange(n, dtype=np.int64) % classes


def npz_spec(**kw) -> NpzDataset:
    return NpzDataset(source="npz", path="d.npz", train_size=kw.pop("train_size", 30),
                      test_size=kw.pop("test_size", 10), **kw)


def prepare(ws: Path, spec: NpzDataset | IdxDataset) -> data.Splits:
    """What the prepare step does with a dataset, minus writing the outputs."""
    x, y = data.load_raw(spec, ws)
    splits = data.split(spec, x, y)
    data.calibration_samples(CalibrationSpec(samples=5), splits, ws)
    return splits


def write_npz(ws: Path, name: str = "d.npz", **arrays) -> Path:
    path = ws / name
    np.savez(path, **arrays)
    return path


def test_good_npz_round_trips(tmp_path):
    x, y = digits_like()
    write_npz(tmp_path, x=x, y=y)
    splits = prepare(tmp_path, npz_spec())
    assert splits.x_train.shape == (30, 8, 8) and splits.num_classes == 4


@pytest.mark.parametrize("poison, expect", [
    (np.nan, "NaN/Inf input values (first at [3, 2, 1])"),
    (np.inf, "1 NaN/Inf input values"),
    (-np.inf, "NaN/Inf"),
])
def test_nan_or_inf_inputs(tmp_path, poison, expect):
    x, y = digits_like()
    x[3, 2, 1] = poison
    write_npz(tmp_path, x=x, y=y)
    with pytest.raises(DataError, match=r"^dataset: .*" + re.escape(expect)):
        prepare(tmp_path, npz_spec())


@pytest.mark.parametrize("label, expect", [
    (-1, "negative label -1; labels must be 0..classes-1"),
    (255, None),  # 255 is still a (sparse) class; allowed
    (2**31, "label 2147483648 is out of range"),
])
def test_labels_outside_the_class_range(tmp_path, label, expect):
    x, y = digits_like()
    y[7] = label
    write_npz(tmp_path, x=x, y=y)
    if expect is None:
        assert prepare(tmp_path, npz_spec()).num_classes == label + 1
        return
    with pytest.raises(DataError, match=expect):
        prepare(tmp_path, npz_spec())


@pytest.mark.parametrize("y, expect", [
    (np.arange(40, dtype=np.float32) % 4, "labels must be a 1-D integer array, got float32"),
    (np.zeros((40, 2), np.int64), r"labels must be a 1-D integer array, got int64\(40, 2\)"),
    (np.zeros(40, np.int64), "every label is 0; a classifier needs at least 2 classes"),
    (np.arange(39, dtype=np.int64) % 4, "40 inputs but 39 labels"),
])
def test_unusable_labels(tmp_path, y, expect):
    x, _ = digits_like()
    write_npz(tmp_path, x=x, y=y)
    with pytest.raises(DataError, match=expect):
        prepare(tmp_path, npz_spec())


@pytest.mark.parametrize("x, expect", [
    (np.zeros((0, 8, 8), np.float32), "dataset: no examples"),
    (np.zeros(40, np.float32), r"inputs have shape \(40,\); expected \(examples, features"),
    (np.array(["a"] * 40), "inputs must be real numbers, got <U1"),
    (np.zeros((40, 4), np.complex64), "inputs must be real numbers, got complex64"),
])
def test_unusable_inputs(tmp_path, x, expect):
    _, y = digits_like()
    write_npz(tmp_path, x=x, y=y[: len(x)])
    with pytest.raises(DataError, match=expect):
        prepare(tmp_path, npz_spec())


@pytest.mark.parametrize("sizes", [
    {"train_size": 0.99, "test_size": 0.01},  # 40 * 0.01 rounds to 0 test examples
    {"train_size": 35, "test_size": 10},  # 45 > 40
])
def test_empty_or_overlapping_splits(tmp_path, sizes):
    x, y = digits_like()
    write_npz(tmp_path, x=x, y=y)
    with pytest.raises(DataError, match="dataset has 40 examples; cannot take"):
        prepare(tmp_path, npz_spec(**sizes))


# ----------------------------------------------------------------------------- files
def test_object_array_needing_pickle_is_refused(tmp_path):
    _, y = digits_like()
    np.savez(tmp_path / "d.npz", x=np.array([object()] * 40, dtype=object), y=y)
    with pytest.raises(DataError, match="not a valid .npz without pickled objects"):
        prepare(tmp_path, npz_spec())


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "npy"])
def test_corrupt_npz(tmp_path, damage):
    x, y = digits_like()
    path = write_npz(tmp_path, x=x, y=y)
    blob = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(blob[: len(blob) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x89not a zip at all" * 100)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        np.save(tmp_path / "x.npy", x)
        (tmp_path / "x.npy").rename(path)
    with pytest.raises(DataError, match=r"d\.npz: not a valid \.npz"):
        prepare(tmp_path, npz_spec())


def test_npz_missing_keys(tmp_path):
    x, y = digits_like()
    write_npz(tmp_path, images=x, labels=y)
    with pytest.raises(DataError, match=r"missing keys \['x', 'y'\]; has \['images', 'labels'\]"):
        prepare(tmp_path, npz_spec())
    assert prepare(tmp_path, npz_spec(x_key="images", y_key="labels")).num_classes == 4


def write_idx(folder: Path, x: np.ndarray, y: np.ndarray) -> IdxDataset:
    folder.mkdir(parents=True, exist_ok=True)
    images = struct.pack(">IIII", 2051, *x.shape) + x.astype(np.uint8).tobytes()
    labels = struct.pack(">II", 2049, len(y)) + y.astype(np.uint8).tobytes()
    (folder / "img.gz").write_bytes(gzip.compress(images))
    (folder / "lbl.gz").write_bytes(gzip.compress(labels))
    return IdxDataset(source="idx", path=folder.name, images="img.gz", labels="lbl.gz",
                      train_size=30, test_size=10)


def test_good_idx_round_trips(tmp_path):
    x, y = digits_like()
    spec = write_idx(tmp_path / "mnist", (x * 255).astype(np.uint8), y)
    assert prepare(tmp_path, spec).x_train.shape == (30, 8, 8)


@pytest.mark.parametrize("damage, expect", [
    ("truncate_gzip", "not a readable gzip file"),
    ("not_gzip", "not a readable gzip file"),
    ("short_payload", r"header says \(40, 8, 8\) but payload has"),
    ("bad_magic", "bad IDX header"),
    ("header_only", "bad IDX header"),
])
def test_corrupt_idx(tmp_path, damage, expect):
    x, y = digits_like()
    spec = write_idx(tmp_path / "mnist", (x * 255).astype(np.uint8), y)
    img = tmp_path / "mnist" / "img.gz"
    raw = gzip.decompress(img.read_bytes())
    blob = {
        "truncate_gzip": img.read_bytes()[:-20],
        "not_gzip": raw,
        "short_payload": gzip.compress(raw[:-64]),
        "bad_magic": gzip.compress(struct.pack(">I", 2049) + raw[4:]),
        "header_only": gzip.compress(raw[:6]),
    }[damage]
    img.write_bytes(blob)
    with pytest.raises(DataError, match=r"img\.gz: " + expect):
        prepare(tmp_path, spec)


def test_idx_images_and_labels_disagree(tmp_path):
    x, y = digits_like()
    spec = write_idx(tmp_path / "mnist", (x * 255).astype(np.uint8), y[:30])
    with pytest.raises(DataError, match="40 inputs but 30 labels"):
        prepare(tmp_path, spec)


def test_missing_files(tmp_path):
    with pytest.raises(DataError, match="no such directory"):
        data.load_raw(IdxDataset(source="idx", path="nowhere"), tmp_path)
    with pytest.raises(DataError, match="file not found"):
        data.load_raw(npz_spec(), tmp_path)


# ----------------------------------------------------------------------------- calibration
@pytest.mark.parametrize("cal, expect", [
    ({"x": np.full((5, 8, 8), np.nan, np.float32)}, "calibration.path 'c.npz': 320 NaN/Inf"),
    ({"x": np.zeros((5, 7, 7), np.float32)}, r"sample shape \(7, 7\) does not match"),
    ({"samples": np.zeros((5, 8, 8))}, r"missing keys \['x'\]"),
    ({"x": np.array([None] * 5)}, "without pickled objects"),
    ({"x": np.zeros((0, 8, 8), np.float32)}, "no examples"),
])
def test_bad_calibration_file(tmp_path, cal, expect):
    x, y = digits_like()
    splits = data.split(npz_spec(), x, y)
    np.savez(tmp_path / "c.npz", **cal)
    with pytest.raises(DataError, match=expect):
        data.calibration_samples(CalibrationSpec(path="c.npz"), splits, tmp_path)


def test_calibration_larger_than_split(tmp_path):
    x, y = digits_like()
    splits = data.split(npz_spec(), x, y)
    with pytest.raises(DataError, match="calibration.samples=31 but the train split has only 30"):
        data.calibration_samples(CalibrationSpec(samples=31), splits, tmp_path)


def test_float_targets_are_a_regression_and_binary_labels_are_0_or_1() -> None:
    x = np.zeros((6, 2), np.float32)
    y = np.linspace(0, 1, 6).astype(np.float32)
    assert data.check_arrays(x, y, "d", "regression") == 0
    with pytest.raises(data.DataError, match="need evaluation.task: regression"):
        data.check_arrays(x, y, "d")
    assert data.check_arrays(x, np.array([0, 1, 1, 0, 1, 0]), "d", "binary") == 2
    with pytest.raises(data.DataError, match="label 2 in a binary task"):
        data.check_arrays(x, np.array([0, 1, 2, 0, 1, 0]), "d", "binary")
