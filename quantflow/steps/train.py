"""train: fit a built-in architecture, or take a user's model as it is (training skipped)."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from quantflow.core import io
from quantflow.core.request import StepContext
from quantflow.core.results import Result
from quantflow.core.specbase import ModelBase, TrainSpec
from quantflow.core.tfenv import tf_modules
from quantflow.domain.models import check_trainable, optimizer, output_units, task_loss
from quantflow.sources import source_of

log = logging.getLogger("quantflow.train")

# evaluation.task: the output head (classes, one sigmoid, the targets' width) and the loss.
READS = ("model", "train", "evaluation.task")


def _progress(keras: Any, epochs: int) -> Any:
    """Log one line per epoch: training is the longest step, users want to see it move."""

    class EpochLog(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items())
            log.info("epoch %d/%d: %s", epoch + 1, epochs, shown)

    return EpochLog()


class TrainInfo(Result):
    trained: bool
    epochs: int
    seconds: float
    params: int
    history: dict[str, list[float]]


def train_model(dataset: Path, model_spec: ModelBase, cfg: TrainSpec, out: Path,
                workspace: Path, task: str = "classification") -> TrainInfo:
    """Fit (or only load) the model and save it at ``out``: a .keras file (Keras 2 or 3), or
    a copy of the user's SavedModel folder / .tflite file."""
    _, keras = tf_modules()
    prepared = io.load_dataset(dataset)
    x, y = prepared.x_train, prepared.y_train
    classes = output_units(task, prepared.num_classes, y)
    if task != "classification":  # one column per output, as the model's output is shaped
        y = y.reshape(len(y), -1).astype("float32")
    start = time.perf_counter()
    history: dict[str, list[float]] = {}
    shapes = io.sample_shapes(x)
    # A fresh graph and fresh layer-name counters: a warm worker may have built models before
    # (the deep check), and layer names end up in the .tflite, whose bytes DVC compares.
    keras.backend.clear_session()
    if model_spec.trains:
        check_trainable(shapes)
        keras.utils.set_random_seed(cfg.seed)  # before build: it seeds the initial weights
    model = source_of(model_spec).build(model_spec, shapes, classes, workspace)
    if isinstance(model, Path):  # a checked SavedModel folder or .tflite: handed on as is
        return _hand_over(model, out, time.perf_counter() - start)
    if model_spec.trains:
        loss, shown = task_loss(task, model)
        model.compile(optimizer=optimizer(cfg), loss=loss, metrics=shown)
        fit = model.fit(x, y, epochs=cfg.epochs, batch_size=cfg.batch_size,
                        validation_split=cfg.validation_split, verbose=0, shuffle=True,
                        callbacks=[_progress(keras, cfg.epochs)])
        history = {k: [float(v) for v in vals] for k, vals in fit.history.items()}
    with io.atomic_path(out, ".keras") as tmp:
        model.save(tmp)
    return TrainInfo(trained=model_spec.trains, epochs=cfg.epochs,
                     seconds=round(time.perf_counter() - start, 3),
                     params=int(model.count_params()), history=history)


def _hand_over(source: Path, out: Path, seconds: float) -> TrainInfo:
    """Copy the user's SavedModel or .tflite to train's output: export reads train's output
    whatever the source, and DVC tracks it like a trained model."""
    if source.is_dir():
        io.replace_dir(out, lambda tmp: shutil.copytree(source, tmp, dirs_exist_ok=True))
    else:
        io.write_bytes(out, source.read_bytes())
    return TrainInfo(trained=False, epochs=0, seconds=round(seconds, 3), params=0, history={})


def train(ctx: StepContext) -> TrainInfo:
    p = ctx.paths
    info = train_model(p.dataset, ctx.pipeline.model, ctx.pipeline.train, p.trained,
                       ctx.workspace, ctx.pipeline.evaluation.task)
    info.write(p.train_info)
    return info


run = train
