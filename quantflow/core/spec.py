"""The pipelines.yaml schema: pydantic v2 models, the single definition of what a spec may say.

Every model forbids unknown keys, so a typo is an error at load time rather than a silently
ignored setting. Reading the YAML file (with line numbers) lives in ``quantflow.core.specload``.

Variant kinds and model sources are plugins: each one's spec class lives in its own module
(``quantflow/variants/<kind>.py``, ``quantflow/sources/<name>.py``, on the bases of
``quantflow.core.specbase``), and the ``Variant`` and ``Model`` unions here are built from the
modules found there. The JSON Schema (``quantflow.core.schema``) follows from ``Spec``.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import InitErrorDetails

from quantflow.core.specbase import CAPABILITY_NAMES, Fraction, GateSpec, Name, Strict, TrainSpec
from quantflow.core.stages import pipeline_stage_names
from quantflow.sources import model_union
from quantflow.variants import applicable, variant_union

# ----------------------------------------------------------------------------- dataset
Normalize = Literal["max", "standard", "none"]


class DatasetBase(Strict):
    train_size: int | Fraction = Field(
        0.8, description="Training examples: a count, or a fraction of the whole dataset."
    )
    test_size: int | Fraction = Field(
        0.2, description="Held-out test examples: a count, or a fraction. Taken from the end."
    )
    shuffle: bool = Field(True, description="Shuffle (with `seed`) before splitting.")
    seed: int = Field(0, ge=0, description="Seed for shuffling and splitting.")
    normalize: Normalize | dict[str, Normalize] = Field(
        "max",
        description="Input normalisation from training statistics: divide by the training max "
        "('max'), subtract mean and divide by std ('standard'), or leave as is ('none'; an "
        "integer input such as token ids then stays integer). A mapping sets it per model "
        "input name (inputs it does not name get 'max').",
    )

    @field_validator("train_size", "test_size")
    @classmethod
    def _positive(cls, v: int | float) -> int | float:
        if isinstance(v, int) and v < 1:
            raise ValueError("must be a positive count or a fraction between 0 and 1")
        return v


class SklearnDigitsDataset(DatasetBase):
    source: Literal["sklearn_digits"] = Field(
        description="scikit-learn's embedded 8x8 digits (1,797 images, no network)."
    )


class IdxDataset(DatasetBase):
    source: Literal["idx"] = Field(description="A directory of MNIST-format IDX .gz files.")
    path: str = Field(description="Directory holding the IDX files, e.g. ../shared/data/mnist.")
    images: str = Field("t10k-images-idx3-ubyte.gz", description="Image file name in `path`.")
    labels: str = Field("t10k-labels-idx1-ubyte.gz", description="Label file name in `path`.")


class NpzDataset(DatasetBase):
    source: Literal["npz"] = Field(description="A NumPy .npz archive (loaded without pickle).")
    path: str = Field(description="Path to the .npz file.")
    x_key: str | dict[str, str] = Field(
        "x", description="Array key of the inputs; for a model with several inputs, a mapping "
        "of model input name to array key, e.g. {image: x_img, features: x_num}.")
    y_key: str = Field("y", description="Array key of the integer labels.")


class KerasDataset(DatasetBase):
    source: Literal["keras"] = Field(description="keras.datasets by name (needs the internet).")
    name: Literal["mnist", "fashion_mnist"] = Field(description="Which keras dataset.")


class ImageDirDataset(DatasetBase):
    source: Literal["image_dir"] = Field(
        description="A folder with one sub-folder of images per class (class = sub-folder name, "
        "labels in sorted name order)."
    )
    path: str = Field(description="The folder holding one sub-folder per class.")
    image_size: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        min_length=2, max_length=2, description="[height, width] every image is resized to."
    )
    color_mode: Literal["rgb", "grayscale"] = Field(
        "rgb", description="rgb gives (H, W, 3) inputs, grayscale (H, W, 1)."
    )
    extensions: list[str] = Field(
        default_factory=lambda: [".png", ".jpg", ".jpeg", ".bmp", ".gif"],
        description="File name endings read as images (case-insensitive); others are skipped.",
    )


class CsvDataset(DatasetBase):
    source: Literal["csv"] = Field(description="A CSV file with a header row.")
    path: str = Field(description="Path to the .csv file.")
    label: str = Field("label", description="Column of the integer class labels.")
    features: list[str] | None = Field(
        None, description="Numeric feature columns, in model input order (default: all others)."
    )
    delimiter: str = Field(",", min_length=1, max_length=1, description="Field separator.")


Dataset = Annotated[
    SklearnDigitsDataset | IdxDataset | NpzDataset | KerasDataset | ImageDirDataset | CsvDataset,
    Field(discriminator="source", description="Where the data comes from."),
]


def dataset_files(ds: Any) -> list[tuple[str, str]]:
    """(spec key, path) of every user file or folder a dataset source reads, relative to the
    workspace: `validate` checks they exist and dvc.yaml tracks them as deps."""
    if isinstance(ds, IdxDataset):
        return [("images", f"{ds.path}/{ds.images}"), ("labels", f"{ds.path}/{ds.labels}")]
    if isinstance(ds, NpzDataset | CsvDataset | ImageDirDataset):
        return [("path", ds.path)]
    return []


# ----------------------------------------------------------------------------- model
# One spec class per model source, each in its own module of quantflow.sources.
Model = model_union()


# ----------------------------------------------------------------------------- train
class CalibrationSpec(Strict):
    samples: int = Field(100, ge=1, le=100000, description="Representative samples to draw.")
    split: Literal["train", "test"] = Field("train", description="Split to draw them from.")
    seed: int = Field(0, ge=0, description="Seed for drawing the samples.")
    path: str | None = Field(
        None, description="Bring your own: an .npz with key `x` (several inputs: the keys of "
        "the npz dataset's `x_key` mapping); track it with `dvc add`."
    )


# ----------------------------------------------------------------------------- variants
# One spec class per variant kind, each in its own module of quantflow.variants.
Variant = variant_union()


# ----------------------------------------------------------------------------- evaluation
Task = Literal["classification", "binary", "regression"]


class EvaluationSpec(Strict):
    task: Task = Field(
        "classification",
        description="classification: one output per class (logits or probabilities); binary: "
        "one sigmoid output (or logit) judged at `threshold`; regression: float targets, an "
        "output of the targets' shape.",
    )
    threshold: float = Field(0.5, gt=0, lt=1, description="binary: P(class 1) that predicts 1.")
    higher_is_better: bool | None = Field(
        None, description="A custom metric's direction (built-in metrics know their own)."
    )
    metric: str | None = Field(
        None,
        description="The primary metric the gate speaks in. classification: accuracy (default) "
        "or top5_accuracy; binary: accuracy (default) or auc; regression: mae (default) or "
        "rmse; or 'package.module:function' from the workspace, (y_true, y_pred) -> float, "
        "with higher_is_better.",
    )
    bootstrap_samples: int = Field(
        1000, ge=0, le=100000,
        description="Paired bootstrap resamples (seed 0) for the 95% interval of each metric "
        "drop; 0 records no interval.",
    )
    threads: int = Field(1, ge=1, le=64, description="Interpreter threads (recorded).")
    warmup_runs: int = Field(50, ge=0, le=10000, description="Untimed single-sample runs first.")
    timed_runs: int = Field(500, ge=1, le=100000, description="Timed single-sample invocations.")
    batch_size: int = Field(
        256, ge=1, le=65536, description="Batch size for accuracy runs (a model with a fixed "
        "batch size is fed its own batch size instead).")
    output: str | None = Field(
        None, min_length=1, description="The model output holding the prediction, by its "
        "signature name, when the model has several (default: its only output).")

    @field_validator("metric")
    @classmethod
    def _metric_fits_task(cls, v: str | None, info: ValidationInfo) -> str | None:
        """A metric of another task, or a user's callable that does not import or does not
        return a number, fails here with the key's line rather than after training."""
        from quantflow import metrics

        if "task" in info.data:
            workspace = Path((info.context or {}).get("workspace", "."))
            metrics.resolve(v, info.data["task"], info.data.get("higher_is_better"), workspace)
        return v

    def primary(self, workspace: Path | None = None) -> Any:
        """The resolved primary metric (a ``quantflow.metrics.Metric``)."""
        from quantflow import metrics

        return metrics.resolve(self.metric, self.task, self.higher_is_better, workspace)


def gate_misfit(gate: GateSpec, evaluation: EvaluationSpec) -> str | None:
    """What is wrong with ``gate`` for this task and metric ("key: why"), or None."""
    task = evaluation.task
    if task == "regression":
        for key in ("min_accuracy", "max_accuracy_drop", "min_agreement"):
            if getattr(gate, key) is not None:
                return f"{key}: needs a classification or binary task; this one is regression"
    from quantflow import metrics

    name = evaluation.metric or metrics.TASK_DEFAULTS[task]
    higher = (bool(evaluation.higher_is_better) if ":" in name
              else metrics.metric(name).higher_is_better)
    wrong = "max_metric" if higher else "min_metric"
    if getattr(gate, wrong) is not None:
        right = "min_metric" if higher else "max_metric"
        return (f"{wrong}: {name} is {'higher' if higher else 'lower'} is better; "
                f"use {right}")
    return None


# ----------------------------------------------------------------------------- publish
class PublishSpec(Strict):
    registry: str = Field("registry", description=(
        "Registry root: a directory (relative to the workspace) or an s3:// URL."))
    strategy: Literal["all_passing", "best"] = Field(
        "all_passing", description="Publish every passing variant, or only the best one."
    )
    objective: Literal["smallest_size", "highest_accuracy", "lowest_latency"] = Field(
        "smallest_size", description="What 'best' means."
    )
    alias: Name = Field("latest", description="Alias pointed at the newest published version.")
    allow_outside_workspace: bool = Field(
        False, description="Allow a registry path outside the workspace (absolute or '..')."
    )

    @model_validator(mode="after")
    def _inside_workspace(self) -> PublishSpec:
        p = PurePosixPath(self.registry)
        escapes = p.is_absolute() or ".." in p.parts
        if escapes and not self.allow_outside_workspace:
            raise ValueError(
                f"registry {self.registry!r} leaves the workspace; use a relative path without "
                "'..', or set allow_outside_workspace: true"
            )
        return self


# ----------------------------------------------------------------------------- schedule
class CronSchedule(Strict):
    cron: str = Field(description="Cron expression, e.g. '0 3 * * 1' (Mondays 03:00).")
    timezone: str = Field("UTC", description="IANA timezone of the cron expression.")


class IntervalSchedule(Strict):
    interval_seconds: int = Field(ge=60, description="Run every N seconds (at least 60).")


Schedule = CronSchedule | IntervalSchedule


# ----------------------------------------------------------------------------- pipeline
class PipelineSpec(Strict):
    description: str = Field("", description="Free text shown in reports.")
    dataset: Dataset
    model: Model = Field(description="Built-in architecture (`arch`) or existing model (`path`).")
    train: TrainSpec = Field(default_factory=TrainSpec, description="Training settings.")
    calibration: CalibrationSpec = Field(
        default_factory=CalibrationSpec, description="Representative data for int8 kinds."
    )
    variants: list[Variant] = Field(min_length=1, description="Quantization variants.")
    gate: GateSpec = Field(default_factory=GateSpec, description="Default gate thresholds.")
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec, description="Evaluation.")
    publish: PublishSpec = Field(default_factory=PublishSpec, description="Where to publish.")
    schedule: Schedule | None = Field(None, description="Retraining schedule for deployments.")

    @field_validator("variants")
    @classmethod
    def _unique_names(cls, v: list[Any]) -> list[Any]:
        seen: set[str] = set()
        for i, variant in enumerate(v):
            if variant.name in seen:
                raise ValueError(f"variant name {variant.name!r} at index {i} is used twice")
            if variant.name == "float":
                raise ValueError("'float' is reserved for the float TFLite baseline")
            seen.add(variant.name)
        return v

    @model_validator(mode="after")
    def _calibration_fits(self) -> PipelineSpec:
        size = getattr(self.dataset, f"{self.calibration.split}_size")
        cal = self.calibration
        if cal.path is None and isinstance(size, int) and cal.samples > size:
            raise ValueError(
                f"calibration.samples ({self.calibration.samples}) is larger than the "
                f"{self.calibration.split} split ({size}); use at most {size}"
            )
        return self

    @model_validator(mode="after")
    def _model_serves_variants(self) -> PipelineSpec:
        """A kind that needs more of the model than it offers (QAT needs Keras 2, every
        converter a SavedModel or Keras model) fails here, not after training; the message
        says what the model is and which kinds do apply to it."""
        have = self.model.provides()
        for v in self.variants:
            if not v.requires <= have:
                need = " and ".join(CAPABILITY_NAMES.get(c, c) for c in sorted(v.requires - have))
                fit = applicable(have)
                raise ValueError(
                    f"variant {v.name!r} (kind {v.kind}) needs {need}; {self.model.describe()}. "
                    + (f"Kinds that apply to this model: {fit}" if fit
                       else "No variant kind applies to this model yet"))
        return self

    @model_validator(mode="after")
    def _gate_fits_metric(self) -> PipelineSpec:
        """A threshold the task or the metric's direction cannot mean (min_accuracy on a
        regression, min_metric on an error) is refused rather than silently ignored."""
        for where, gate in [("gate", self.gate)] + [(f"variants[{i}].gate", v.gate)
                                                    for i, v in enumerate(self.variants)]:
            problem = gate_misfit(gate, self.evaluation) if gate else None
            if problem:
                raise ValueError(f"{where}.{problem}")
        return self

    def variant(self, name: str) -> Any:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"no variant {name!r}; have: {', '.join(v.name for v in self.variants)}")

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of this pipeline: the spec hash in manifests."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


DASK_ADDRESS = r"^(tcp|tls)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):[0-9]{1,5}$"


class DaskLocalSpec(Strict):
    n_workers: int = Field(2, ge=1, le=256, description="Worker processes of the LocalCluster "
                           "the run starts on this machine (and stops at its end).")
    threads_per_worker: int = Field(1, ge=1, le=64, description="Threads per worker: how many "
                                    "steps one worker runs at once, and its TensorFlow threads.")


class DaskSpec(Strict):
    address: str | None = Field(None, description="An existing Dask "
                                "scheduler, `tcp://host:8786`; its workers must see the "
                                "workspace at the same path (a shared filesystem).")
    local: DaskLocalSpec | None = Field(None, description="Start a LocalCluster for the run "
                                        "instead: `{n_workers, threads_per_worker}`.")
    connect_timeout_seconds: float = Field(10, gt=0, le=600, description="How long to try "
                                           "to reach the scheduler (and wait for a worker) "
                                           "before the run stops with an error.")

    @field_validator("address")
    @classmethod
    def _scheduler_address(cls, v: str | None) -> str | None:
        if v is not None and not re.match(DASK_ADDRESS, v):
            raise ValueError(f"{v!r} is not a scheduler address; expected tcp://host:port "
                             "(or tls://host:port), e.g. tcp://127.0.0.1:8786")
        return v

    @model_validator(mode="after")
    def _one_cluster(self) -> DaskSpec:
        """An address and a local cluster would be two clusters; neither is no cluster."""
        if (self.address is None) == (self.local is None):
            raise _error_at(("local",) if self.local else (), self.address,
                            "set exactly one of `address` (an existing scheduler, "
                            "tcp://host:8786) and `local` ({n_workers, threads_per_worker})")
        return self


class ExecutionSpec(Strict):
    max_workers: int = Field(
        2, ge=1, le=64, description="Worker processes for parallel steps (variants), with "
        "task_runner: process."
    )
    task_runner: Literal["process", "dask"] = Field(
        "process", description="Where the TensorFlow steps run: `process`, warm worker "
        "processes of the run (max_workers); `dask`, tasks on the Dask cluster of `dask`.")
    dask: DaskSpec | None = Field(None, description="The Dask cluster, with task_runner: dask.")
    artifacts: str = Field("artifacts", description="Folder for per-pipeline artifacts, "
                           "relative to the spec's folder and inside it.")
    variant_timeout_seconds: float = Field(
        3600, gt=0, le=7 * 24 * 3600,
        description="A variant (conversion + evaluation) still running after this many seconds "
        "is killed and recorded as failed, so a hung conversion cannot hold the run (and the "
        "pipeline's lock) forever. Counted from when the variant's worker starts on it. On Dask "
        "the variant is recorded as failed but its thread cannot be killed: it runs on in its "
        "Dask worker until it ends (docs/SCALE.md).",
    )

    @field_validator("artifacts")
    @classmethod
    def _inside_workspace(cls, v: str) -> str:
        """Artifacts are DVC outputs, and DVC tracks only files inside its repository."""
        p = PurePosixPath(v)
        if p.is_absolute() or ".." in p.parts:
            raise ValueError(f"artifacts {v!r} leaves the workspace; DVC outputs must stay "
                             "inside it: use a relative path without '..'")
        return v

    @model_validator(mode="after")
    def _dask_only_with_dask(self) -> ExecutionSpec:
        """`dask` says which cluster; it means nothing to the process runner, and the dask
        runner has no default cluster to fall back on."""
        if self.task_runner == "dask" and self.dask is None:
            raise _error_at(("task_runner",), "dask", "task_runner: dask needs `dask: {address: "
                            "tcp://host:8786}` or `dask: {local: {n_workers: 2}}`")
        if self.task_runner == "process" and self.dask is not None:
            raise _error_at(("dask", "address" if self.dask.address else "local"),
                            self.dask.address or self.dask.local,
                            "`dask` is used only with `task_runner: dask` (it is "
                            f"{self.task_runner!r}); set that, or remove `dask`")
        return self


def _error_at(loc: tuple[str | int, ...], value: Any, message: str) -> ValidationError:
    """A validation error at ``loc`` below the model raising it, so the loader points at the
    offending key rather than at the whole document (pydantic prefixes the model's own loc)."""
    return ValidationError.from_exception_data("Spec", [InitErrorDetails(
        type="value_error", loc=loc, input=value, ctx={"error": ValueError(message)})])


class Spec(Strict):
    execution: ExecutionSpec = Field(default_factory=ExecutionSpec, description="How to run.")
    pipelines: dict[Name, PipelineSpec] = Field(min_length=1, description="Pipelines by name.")

    @model_validator(mode="after")
    def _stage_names_unique(self) -> Spec:
        """Stage names join pipeline, step and variant with '-', so `a-b` + `c` and `a` + `b-c`
        name the same stage; refuse the later of the two, at its own key."""
        seen: dict[str, str] = {}
        for name, pipe in self.pipelines.items():
            variants = [v.name for v in pipe.variants]
            for stage, i in pipeline_stage_names(name, variants):
                this = f"pipeline {name!r}" + (f", variant {variants[i]!r}" if i is not None
                                               else "")
                if stage in seen:
                    loc = ("pipelines", name) + (("variants", i, "name") if i is not None else ())
                    raise _error_at(loc, variants[i] if i is not None else name,
                                    f"stage name {stage!r} of {this} is also the stage of "
                                    f"{seen[stage]}; rename one of them")
                seen[stage] = this
        return self
