"""Readers for data as teams really have it: a folder of images per class, and a CSV table.

Both return (x, y) before any split, with inputs as float32 and labels as int64, and name the
file (and row) of anything they cannot use. Files are read in sorted order, so the split that
follows is deterministic for the same folder.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from quantflow.core.errors import DataError
from quantflow.core.spec import CsvDataset, ImageDirDataset


def _class_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DataError(f"dataset.path {str(root)!r}: no such directory")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"{root}: needs one sub-folder per class (at least 2), found "
                        f"{[p.name for p in classes]}")
    return classes


def _read_image(path: Path, size: list[int], mode: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("RGB" if mode == "rgb" else "L")
            img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.float32)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None
    return arr if arr.ndim == 3 else arr[..., None]


def read_image_dir(ds: ImageDirDataset, workspace: Path) -> tuple[np.ndarray, np.ndarray,
                                                                  list[str]]:
    """(x, y, class names): x is (N, H, W, C) float32 pixel values 0-255."""
    root = workspace / ds.path
    endings = tuple(e.lower() for e in ds.extensions)
    xs, ys, names = [], [], []
    for label, folder in enumerate(_class_dirs(root)):
        files = sorted(p for p in folder.rglob("*") if p.is_file() and
                       p.name.lower().endswith(endings))
        if not files:
            raise DataError(f"{folder}: class {folder.name!r} has no images "
                            f"({', '.join(endings)})")
        names.append(folder.name)
        for f in files:
            xs.append(_read_image(f, ds.image_size, ds.color_mode))
            ys.append(label)
    return np.stack(xs), np.asarray(ys, np.int64), names


def _number(cell: str, where: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise DataError(f"{where}: {cell!r} is not a number") from None
    if not np.isfinite(value):
        raise DataError(f"{where}: {cell!r} is not a finite number")
    return value


def _columns(header: list[str], ds: CsvDataset, path: Path) -> tuple[int, list[int]]:
    if ds.label not in header:
        raise DataError(f"{path}: no label column {ds.label!r}; columns are {header}")
    wanted = ds.features if ds.features is not None else [c for c in header if c != ds.label]
    missing = [c for c in wanted if c not in header]
    if missing or not wanted:
        raise DataError(f"{path}: feature columns {missing or wanted} not in {header}")
    return header.index(ds.label), [header.index(c) for c in wanted]


def read_csv(ds: CsvDataset, workspace: Path,
             task: str = "classification") -> tuple[np.ndarray, np.ndarray]:
    """(x, y): x is (N, features) float32, y the label column: integer classes, or float
    targets when ``task`` is regression."""
    path = workspace / ds.path
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter=ds.delimiter))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    if len(rows) < 2:
        raise DataError(f"{path}: needs a header row and at least one data row")
    header = [c.strip() for c in rows[0]]
    label_col, feature_cols = _columns(header, ds, path)
    xs, ys = [], []
    for n, row in enumerate(rows[1:], start=2):  # line numbers as an editor shows them
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{path}:{n}: {len(row)} fields, the header has {len(header)}")
        label = row[label_col].strip()
        if not label:
            raise DataError(f"{path}:{n}: missing label in column {ds.label!r}")
        value = _number(label, f"{path}:{n}: column {ds.label!r}")
        if task != "regression" and value != int(value):
            raise DataError(f"{path}:{n}: label {label!r} is not an integer class "
                            "(float targets need evaluation.task: regression)")
        ys.append(value if task == "regression" else int(value))
        xs.append([_number(row[c].strip(), f"{path}:{n}: column {header[c]!r}")
                   for c in feature_cols])
    return np.asarray(xs, np.float32), np.asarray(ys, np.float32 if task == "regression"
                                                  else np.int64)
