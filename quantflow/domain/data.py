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

from quantflow.core import io
from quantflow.core.errors import DataError  # noqa: F401 - re-exported
from quantflow.core.io import Inputs
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
    x_train: Inputs
    y_train: np.ndarray
    x_test: Inputs
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
             task: str = "classification") -> tuple[Inputs, np.ndarray]:
    """Return all (x, y) of the source, before any split (x by input name when the npz
    source maps several model inputs to array keys; csv reads float targets for a regression
    ``task``; the others return their arrays as stored)."""
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
        return _load_npz_inputs(workspace / ds.path, ds.x_key, ds.y_key)
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


def _load_npz_inputs(path: Path, x_key: str | dict[str, str],
                     y_key: str) -> tuple[Inputs, np.ndarray]:
    """(x, y) of an .npz; ``x_key`` as a mapping reads one array per model input name."""
    if isinstance(x_key, str):
        x, y = _load_npz(path, x_key, y_key)
        return x, y
    names = sorted(x_key)
    *arrays, y = _load_npz(path, *(x_key[n] for n in names), y_key)
    return dict(zip(names, arrays, strict=True)), y


def check_inputs(x: Inputs, y: np.ndarray, where: str, task: str = "classification") -> int:
    """:func:`check_arrays` for every input of ``x``, named in the message."""
    if not isinstance(x, dict):
        return check_arrays(x, y, where, task)
    return min(check_arrays(arr, y, f"{where} input {name!r}", task) for name, arr in x.items())


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


def split(ds: DatasetSpec, x: Inputs, y: np.ndarray,
          task: str = "classification") -> Splits:
    """Shuffle (optionally), take train from the front and test from the back, normalise
    each input with its own training statistics."""
    num_classes = check_inputs(x, y, "dataset", task)
    if task == "classification" and num_classes < 2:
        raise DataError("dataset: every label is 0; a classifier needs at least 2 classes")
    total = len(y)
    n_train, n_test = _count(ds.train_size, total), _count(ds.test_size, total)
    if n_train < 1 or n_test < 1 or n_train + n_test > total:
        raise DataError(f"dataset has {total} examples; cannot take train_size={n_train} and "
                        f"test_size={n_test} without overlap")
    order = np.random.default_rng(ds.seed).permutation(total) if ds.shuffle else np.arange(total)
    tr, te = order[:n_train], order[total - n_test:]
    if isinstance(x, dict):
        pairs = {name: _normalised(_method(ds.normalize, name), arr[tr], arr[te])
                 for name, arr in x.items()}
        x_train: Inputs = {k: v[0] for k, v in pairs.items()}
        x_test: Inputs = {k: v[1] for k, v in pairs.items()}
    else:
        x_train, x_test = _normalised(_method(ds.normalize, None), x[tr], x[te])
    kind = np.float32 if task == "regression" else np.int64
    return Splits(x_train, y[tr].astype(kind), x_test, y[te].astype(kind), num_classes)


def _method(normalize: str | dict[str, str], name: str | None) -> str:
    if isinstance(normalize, str):
        return normalize
    return normalize.get(name or "", "max")


def _normalised(method: str, train: np.ndarray,
                test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One input's (train, test), scaled by training statistics. With 'none' an integer input
    (token ids, which an Embedding indexes) stays integer; anything else becomes float32."""
    if method == "none" and np.issubdtype(train.dtype, np.integer):
        return train, test
    train, test = train.astype(np.float32), test.astype(np.float32)
    if method == "max":
        scale = float(np.abs(train).max()) or 1.0
        return train / scale, test / scale
    if method == "standard":
        mean, std = float(train.mean()), float(train.std()) or 1.0
        return (train - mean) / std, (test - mean) / std
    return train, test


def calibration_samples(cal: CalibrationSpec, splits: Splits, workspace: Path,
                        ds: DatasetSpec | None = None) -> Inputs:
    """Representative inputs: drawn from a split, or a user's own file (key `x`, or the keys
    of the npz dataset's `x_key` mapping for several inputs)."""
    if cal.path is not None:
        return _own_calibration(cal.path, splits, workspace, ds)
    pool = splits.x_train if cal.split == "train" else splits.x_test
    size = io.examples(pool)
    if cal.samples > size:
        raise DataError(f"calibration.samples={cal.samples} but the {cal.split} split has only "
                        f"{size} examples")
    idx = np.random.default_rng(cal.seed).choice(size, size=cal.samples, replace=False)
    return io.take(pool, np.sort(idx))


def _own_calibration(rel: str, splits: Splits, workspace: Path,
                     ds: DatasetSpec | None) -> Inputs:
    """The user's calibration file, checked like the dataset and against its sample shapes;
    each input takes the dtype of the dataset's (integer token ids stay integer)."""
    where, several = f"calibration.path {rel!r}", isinstance(splits.x_train, dict)
    keys: dict[str, str] = dict(getattr(ds, "x_key", {})) if several else {"": "x"}
    ref = splits.x_train if isinstance(splits.x_train, dict) else {"": splits.x_train}
    arrays = dict(zip(keys, _load_npz(workspace / rel, *keys.values()), strict=True))
    for name, arr in arrays.items():
        label = f"{where} input {name!r}" if name else where
        check_arrays(arr, np.zeros(len(arr) if arr.ndim else 0, np.int64), label)
        if arr.shape[1:] != ref[name].shape[1:]:
            raise DataError(f"{label}: sample shape {arr.shape[1:]} does not match the "
                            f"dataset's {ref[name].shape[1:]}")
        arrays[name] = arr.astype(ref[name].dtype)
    return arrays if several else arrays[""]


def class_names(ds: DatasetSpec, workspace: Path, num_classes: int) -> list[str]:
    """What each label means: the sub-folder names of an image folder, else the numbers."""
    if isinstance(ds, ImageDirDataset):
        return sorted(p.name for p in (workspace / ds.path).iterdir()
                      if p.is_dir() and not p.name.startswith("."))
    return [str(i) for i in range(num_classes)]
