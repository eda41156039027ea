"""prepare: split and normalise the dataset, draw calibration samples, record their hashes."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from quantflow import data
from quantflow.registry import sha256_file
from quantflow.results import Result
from quantflow.steps import StepContext


class PrepareInfo(Result):
    source: str
    num_classes: int
    input_shape: list[int]
    train_examples: int
    test_examples: int
    calibration_examples: int
    dataset_sha256: str
    calibration_sha256: str


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Byte-reproducible .npz (fixed zip timestamps), so equal data gives an equal DVC hash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for key, arr in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(arr), allow_pickle=False)
    os.replace(tmp, path)


def prepare(ctx: StepContext) -> PrepareInfo:
    """Write dataset.npz and calibration.npz; fail early on unusable data."""
    p, spec = ctx.paths, ctx.pipeline
    x, y = data.load_raw(spec.dataset, ctx.workspace)
    splits = data.split(spec.dataset, x, y)
    calib = data.calibration_samples(spec.calibration, splits, ctx.workspace)
    _save_npz(p.dataset, x_train=splits.x_train, y_train=splits.y_train, x_test=splits.x_test,
              y_test=splits.y_test, num_classes=np.int64(splits.num_classes))
    _save_npz(p.calibration, x=calib.astype(np.float32))
    info = PrepareInfo(
        source=spec.dataset.source, num_classes=splits.num_classes,
        input_shape=list(splits.x_train.shape[1:]), train_examples=len(splits.x_train),
        test_examples=len(splits.x_test), calibration_examples=len(calib),
        dataset_sha256=sha256_file(p.dataset),
        calibration_sha256=sha256_file(p.calibration),
    )
    info.write(p.prepare_info)
    return info


run = prepare
