"""File plumbing every step shares: atomic writes with fsync, hashes, and the prepared-dataset
file. Nothing else in quantflow opens a temp file, renames into place or re-reads
``dataset.npz`` by hand.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def fsync_dir(path: Path) -> None:
    """A rename is durable only once its directory entry is flushed."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success fsync it and rename it into place, so a
    reader (or a crash) only ever sees the old file or the complete new one. ``suffix`` keeps
    an extension for writers that insist on one (``.keras``, ``.npz``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; artifacts are for every reader
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="")
    return Path(path)


def replace_dir(path: Path, fill: Callable[[Path], None]) -> Path:
    """Build a directory (a SavedModel) in a temp sibling with ``fill``, then swap it in."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        fill(tmp)
        os.chmod(tmp, 0o755)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    """Streaming sha256, for manifests and verify (files may be large)."""
    return _digest(path, "sha256")


def md5_file(path: Path) -> str:
    """The hash DVC 3 records for a file: md5 of its bytes."""
    return _digest(path, "md5")


def save_npy(path: Path, array: np.ndarray) -> Path:
    """One array as .npy, atomically and without pickle (the float model's test outputs)."""
    with atomic_path(path, ".npy") as tmp, open(tmp, "wb") as f:
        np.lib.format.write_array(f, np.asarray(array), allow_pickle=False)
    return Path(path)


def save_npz(path: Path, **arrays: np.ndarray) -> Path:
    """Byte-reproducible .npz (fixed zip timestamps, no pickle), so equal data gives an equal
    DVC hash."""
    with atomic_path(path, ".npz") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for key, arr in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(arr), allow_pickle=False)
    return Path(path)


# A model's inputs: one array, or one array per input name (models with several inputs).
Inputs = np.ndarray | dict[str, np.ndarray]


def _kept(arr: np.ndarray) -> np.ndarray:
    """Integer inputs (token ids) keep their integer type; everything else is float32."""
    arr = np.asarray(arr)
    return arr if np.issubdtype(arr.dtype, np.integer) else arr.astype(np.float32)


def _flat(key: str, x: Inputs) -> dict[str, np.ndarray]:
    """One input is stored under ``key`` (the file format of single-input pipelines, byte
    for byte); several under ``key.<input name>`` in sorted order."""
    if isinstance(x, dict):
        return {f"{key}.{name}": x[name] for name in sorted(x)}
    return {key: x}


def _unflat(npz: Any, key: str, cast: Callable[[np.ndarray], np.ndarray]) -> Inputs | None:
    if key in npz.files:
        return cast(npz[key])
    named = {k[len(key) + 1:]: cast(npz[k]) for k in npz.files if k.startswith(f"{key}.")}
    return named or None


def examples(x: Inputs) -> int:
    """How many examples ``x`` holds (every input has the same number)."""
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def sample_shapes(x: Inputs) -> tuple[int, ...] | dict[str, tuple[int, ...]]:
    """The shape of one example: of the array, or of each named input."""
    if isinstance(x, dict):
        return {k: tuple(v.shape[1:]) for k, v in x.items()}
    return tuple(x.shape[1:])


def take(x: Inputs, index: Any) -> Inputs:
    """The same rows of every input."""
    return {k: v[index] for k, v in x.items()} if isinstance(x, dict) else x[index]


@dataclass(frozen=True)
class PreparedData:
    """What the prepare step writes to ``dataset.npz``: split, normalised data. ``x_*`` is one
    array, or one array per model input name; ``y`` are int64 class labels, or float32 targets
    of a regression (``num_classes`` 0)."""

    x_train: Inputs
    y_train: np.ndarray
    x_test: Inputs
    y_test: np.ndarray
    num_classes: int


def save_dataset(path: Path, data: PreparedData) -> Path:
    return save_npz(path, **_flat("x_train", data.x_train), y_train=data.y_train,
                    **_flat("x_test", data.x_test), y_test=data.y_test,
                    num_classes=np.int64(data.num_classes))


def load_dataset(path: Path) -> PreparedData:
    """The prepared dataset; ``num_classes`` is inferred from the labels in files without it."""
    with np.load(path, allow_pickle=False) as npz:
        x_train = _unflat(npz, "x_train", _kept)
        y_train = _targets(npz["y_train"]) if "y_train" in npz else np.zeros((0,), np.int64)
        x_test = _unflat(npz, "x_test", _kept)
        y_test = _targets(npz["y_test"])
        if x_test is None or len(y_test) == 0 or examples(x_test) != len(y_test):
            raise ValueError(f"{path}: need matching, non-empty x_test and y_test")
        if "num_classes" in npz:
            classes = int(npz["num_classes"])
        else:
            classes = int(max(int(a.max()) for a in (y_test, y_train) if a.size) + 1)
    return PreparedData(np.zeros((0,)) if x_train is None else x_train, y_train, x_test,
                        y_test, classes)


def _targets(y: np.ndarray) -> np.ndarray:
    """Class labels as int64; a regression's float targets stay float (as float32)."""
    return np.asarray(y, np.int64 if np.issubdtype(y.dtype, np.integer) else np.float32)


def save_calibration(path: Path, x: Inputs) -> Path:
    return save_npz(path, **_flat("x", {k: _kept(v) for k, v in x.items()}
                                  if isinstance(x, dict) else _kept(x)))


def load_calibration(path: Path) -> Inputs:
    with np.load(path, allow_pickle=False) as npz:
        x = _unflat(npz, "x", _kept)
    if x is None or examples(x) == 0:
        raise ValueError(f"{path}: calibration set 'x' is empty")
    return x
