"""Datasets: load raw arrays from a source, check them, split, normalise, and draw calibration.

Everything is NumPy; nothing here imports TensorFlow (the `keras` source imports it only when
used). Files are read without pickle.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quantflow.core.errors import DataError  # noqa: F401 - re-exported
from quantflow.core.spec import (
    CalibrationSpec,
    CsvDataset,
    IdxDataset,
    ImageDirDataset,
    KerasDataset,
    NpzDataset,
    SklearnDigitsDataset,
)
from quantflow.domain import readers

DatasetSpec = (SklearnDigitsDataset | IdxDataset | NpzDataset | KerasDataset | ImageDirDataset
               | CsvDataset)




MAX_CLASSES = 10_000  # a label like 255 ("ignore") or 2**31 is a data bug, not a class


@dataclass(frozen=True)
class Splits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int


def _read_idx(path: Path, magic: int, dims: int) -> np.ndarray:
    """Parse one gzip IDX file, checking the header against the payload size."""
    try:
        raw = gzip.decompress(path.read_bytes())
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: not a readable gzip file ({exc}); truncated or corrupt?") \
            from None
    header = 4 + 4 * dims
    if len(raw) < header or struct.unpack(">I", raw[:4])[0] != magic:
        raise DataError(f"{path}: bad IDX header (expected magic {magic})")
    shape = struct.unpack(f">{dims}I", raw[4:header])
    if len(raw) - header != int(np.prod(shape)):
        raise DataError(f"{path}: header says {shape} but payload has {len(raw) - header} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_raw(ds: DatasetSpec, workspace: Path,
             task: str = "classification") -> tuple[np.ndarray, np.ndarray]:
    """Return all (x, y) of the source, before any split (csv reads float targets for a
    regression ``task``; the others return their arrays as stored)."""
    if isinstance(ds, SklearnDigitsDataset):
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.images.astype(np.float32), digits.target.astype(np.int64)
    if isinstance(ds, IdxDataset):
        root = workspace / ds.path
        if not root.is_dir():
            raise DataError(f"dataset.path {ds.path!r}: no such directory ({root})")
        return _read_idx(root / ds.images, 2051, 3), _read_idx(root / ds.labels, 2049, 1)
    if isinstance(ds, NpzDataset):
        x, y = _load_npz(workspace / ds.path, ds.x_key, ds.y_key)
        return x, y
    if isinstance(ds, ImageDirDataset):
        x, y, _ = readers.read_image_dir(ds, workspace)
        return x, y
    if isinstance(ds, CsvDataset):
        return readers.read_csv(ds, workspace, task)
    from quantflow.core.tfenv import tf_modules

    _, keras = tf_modules()
    (x1, y1), (x2, y2) = getattr(keras.datasets, ds.name).load_data()
    return np.concatenate([x1, x2]), np.concatenate([y1, y2])


def _load_npz(path: Path, *keys: str) -> tuple[np.ndarray, ...]:
    """The arrays ``keys`` of an .npz, never unpickling (object arrays are refused)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise DataError(f"{path}: missing keys {missing}; has {z.files}")
            return tuple(z[k] for k in keys)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except DataError:
        raise
    except Exception as exc:  # zipfile/pickle/format errors all mean "not a usable npz"
        raise DataError(f"{path}: not a valid .npz without pickled objects ({exc})") from None


def check_arrays(x: np.ndarray, y: np.ndarray, where: str,
                 task: str = "classification") -> int:
    """Reject data a model cannot learn from; return the number of classes (0: regression)."""
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise DataError(f"{where}: inputs must be real numbers, got {x.dtype}")
    if x.ndim < 2:
        raise DataError(f"{where}: inputs have shape {x.shape}; expected (examples, features...)")
    if len(x) == 0:
        raise DataError(f"{where}: no examples")
    if len(x) != len(y):
        raise DataError(f"{where}: {len(x)} inputs but {len(y)} labels")
    _finite(x, where, "input")
    if task == "regression":
        if not np.issubdtype(y.dtype, np.number) or np.iscomplexobj(y):
            raise DataError(f"{where}: regression targets must be real numbers, got {y.dtype}")
        _finite(y, where, "target")
        return 0
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        hint = " (float targets need evaluation.task: regression)" if \
            np.issubdtype(y.dtype, np.floating) else ""
        raise DataError(f"{where}: labels must be a 1-D integer array, got {y.dtype}{y.shape}"
                        + hint)
    if y.min() < 0:
        raise DataError(f"{where}: negative label {int(y.min())}; labels must be 0..classes-1")
    if task == "binary" and y.max() > 1:
        raise DataError(f"{where}: label {int(y.max())} in a binary task; labels must be 0 or 1")
    if y.max() >= MAX_CLASSES:
        raise DataError(f"{where}: label {int(y.max())} is out of range; labels must be "
                        f"0..classes-1 with at most {MAX_CLASSES} classes")
    return 2 if task == "binary" else int(y.max()) + 1


def _finite(a: np.ndarray, where: str, what: str) -> None:
    bad = ~np.isfinite(a.astype(np.float64, copy=False))
    if bad.any():
        first = np.argwhere(bad)[0].tolist()
        raise DataError(f"{where}: {int(bad.sum())} NaN/Inf {what} values (first at {first})")


def _count(size: int | float, total: int) -> int:
    return size if isinstance(size, int) else int(round(size * total))


def split(ds: DatasetSpec, x: np.ndarray, y: np.ndarray,
          task: str = "classification") -> Splits:
    """Shuffle (optionally), take train from the front and test from the back, normalise."""
    num_classes = check_arrays(x, y, "dataset", task)
    if task == "classification" and num_classes < 2:
        raise DataError("dataset: every label is 0; a classifier needs at least 2 classes")
    n_train, n_test = _count(ds.train_size, len(x)), _count(ds.test_size, len(x))
    if n_train < 1 or n_test < 1 or n_train + n_test > len(x):
        raise DataError(f"dataset has {len(x)} examples; cannot take train_size={n_train} and "
                        f"test_size={n_test} without overlap")
    order = np.random.default_rng(ds.seed).permutation(len(x)) if ds.shuffle else np.arange(len(x))
    tr, te = order[:n_train], order[len(x) - n_test:]
    x_train, x_test = x[tr].astype(np.float32), x[te].astype(np.float32)
    if ds.normalize == "max":
        scale = float(np.abs(x_train).max()) or 1.0
        x_train, x_test = x_train / scale, x_test / scale
    elif ds.normalize == "standard":
        mean, std = float(x_train.mean()), float(x_train.std()) or 1.0
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    kind = np.float32 if task == "regression" else np.int64
    return Splits(x_train, y[tr].astype(kind), x_test, y[te].astype(kind), num_classes)


def calibration_samples(cal: CalibrationSpec, splits: Splits, workspace: Path) -> np.ndarray:
    """Representative inputs: drawn from a split, or a user's own file (key `x`)."""
    if cal.path is not None:
        (x,) = _load_npz(workspace / cal.path, "x")
        check_arrays(x, np.zeros(len(x) if x.ndim else 0, np.int64),
                     f"calibration.path {cal.path!r}")
        x = x.astype(np.float32)
        if x.shape[1:] != splits.x_train.shape[1:]:
            raise DataError(f"calibration.path {cal.path!r}: sample shape {x.shape[1:]} does not "
                            f"match the dataset's {splits.x_train.shape[1:]}")
        return x
    pool = splits.x_train if cal.split == "train" else splits.x_test
    if cal.samples > len(pool):
        raise DataError(f"calibration.samples={cal.samples} but the {cal.split} split has only "
                        f"{len(pool)} examples")
    idx = np.random.default_rng(cal.seed).choice(len(pool), size=cal.samples, replace=False)
    return pool[np.sort(idx)]



def class_names(ds: DatasetSpec, workspace: Path, num_classes: int) -> list[str]:
    """What each label means: the sub-folder names of an image folder, else the numbers."""
    if isinstance(ds, ImageDirDataset):
        return sorted(p.name for p in (workspace / ds.path).iterdir()
                      if p.is_dir() and not p.name.startswith("."))
    return [str(i) for i in range(num_classes)]
