"""prepare: split and normalise the dataset, draw calibration samples, record their hashes."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from quantflow.core import io
from quantflow.core.request import StepContext
from quantflow.core.results import Result
from quantflow.domain import data

# evaluation.task: whether labels are classes (checked as such) or a regression's float targets.
READS = ("dataset", "calibration", "evaluation.task")


class PrepareInfo(Result):
    source: str
    num_classes: int
    input_shape: list[int] | dict[str, list[int]]  # by model input name when several
    train_examples: int
    test_examples: int
    calibration_examples: int
    dataset_sha256: str
    calibration_sha256: str
    class_names: list[str] = Field(default_factory=list)
    task: str = "classification"


def _listed(shapes: tuple[int, ...] | dict[str, tuple[int, ...]]) -> Any:
    """JSON-friendly sample shapes (lists), one per input when there are several."""
    if isinstance(shapes, dict):
        return {k: list(v) for k, v in shapes.items()}
    return list(shapes)


def prepare(ctx: StepContext) -> PrepareInfo:
    """Write dataset.npz and calibration.npz; fail early on unusable data."""
    p, spec = ctx.paths, ctx.pipeline
    task = spec.evaluation.task
    x, y = data.load_raw(spec.dataset, ctx.workspace, task)
    splits = data.split(spec.dataset, x, y, task)
    calib = data.calibration_samples(spec.calibration, splits, ctx.workspace, spec.dataset)
    io.save_dataset(p.dataset, io.PreparedData(splits.x_train, splits.y_train, splits.x_test,
                                               splits.y_test, splits.num_classes))
    io.save_calibration(p.calibration, calib)
    info = PrepareInfo(
        source=spec.dataset.source, num_classes=splits.num_classes,
        input_shape=_listed(io.sample_shapes(splits.x_train)),
        train_examples=len(splits.y_train), test_examples=len(splits.y_test),
        calibration_examples=io.examples(calib),
        dataset_sha256=io.sha256_file(p.dataset),
        calibration_sha256=io.sha256_file(p.calibration),
        class_names=data.class_names(spec.dataset, ctx.workspace, splits.num_classes),
        task=task,
    )
    info.write(p.prepare_info)
    return info


run = prepare
