"""The pipelines.yaml schema: pydantic v2 models, the single definition of what a spec may say.

Every model forbids unknown keys, so a typo is an error at load time rather than a silently
ignored setting. Reading the YAML file (with line numbers) lives in ``quantflow.core.specload``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails

from quantflow.core.stages import pipeline_stage_names

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
Name = Annotated[
    str,
    StringConstraints(pattern=NAME_PATTERN),
    Field(description="Letters, digits, '_' or '-', starting with a letter (max 64)."),
]
Fraction = Annotated[float, Field(gt=0, lt=1)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ----------------------------------------------------------------------------- dataset
class DatasetBase(Strict):
    train_size: int | Fraction = Field(
        0.8, description="Training examples: a count, or a fraction of the whole dataset."
    )
    test_size: int | Fraction = Field(
        0.2, description="Held-out test examples: a count, or a fraction. Taken from the end."
    )
    shuffle: bool = Field(True, description="Shuffle (with `seed`) before splitting.")
    seed: int = Field(0, ge=0, description="Seed for shuffling and splitting.")
    normalize: Literal["max", "standard", "none"] = Field(
        "max",
        description="Input normalisation from training statistics: divide by the training max "
        "('max'), subtract mean and divide by std ('standard'), or leave as is ('none').",
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
    x_key: str = Field("x", description="Array key of the inputs.")
    y_key: str = Field("y", description="Array key of the integer labels.")


class KerasDataset(DatasetBase):
    source: Literal["keras"] = Field(description="keras.datasets by name (needs the internet).")
    name: Literal["mnist", "fashion_mnist"] = Field(description="Which keras dataset.")


Dataset = Annotated[
    SklearnDigitsDataset | IdxDataset | NpzDataset | KerasDataset,
    Field(discriminator="source", description="Where the data comes from."),
]


# ----------------------------------------------------------------------------- model
class SeedCnnModel(Strict):
    arch: Literal["seed_cnn"] = Field(
        description="The CNN of TF's QAT example: Reshape, Conv2D, MaxPool, Flatten, Dense."
    )
    filters: int = Field(12, ge=1, le=1024, description="Conv2D filters.")
    kernel_size: int = Field(3, ge=1, le=11, description="Conv2D kernel size.")
    pool_size: int = Field(2, ge=1, le=8, description="MaxPool size.")


class MlpModel(Strict):
    arch: Literal["mlp"] = Field(description="A small fully connected network.")
    hidden: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        default_factory=lambda: [64], description="Hidden layer widths (ReLU)."
    )


class PathModel(Strict):
    path: str = Field(
        description="An existing .keras/.h5 file or SavedModel directory; training is skipped."
    )


def _model_tag(v: Any) -> str | None:
    if isinstance(v, dict):
        return "path" if "path" in v else v.get("arch")
    return "path" if isinstance(v, PathModel) else getattr(v, "arch", None)


Model = Annotated[
    Annotated[SeedCnnModel, Tag("seed_cnn")]
    | Annotated[MlpModel, Tag("mlp")]
    | Annotated[PathModel, Tag("path")],
    Discriminator(
        _model_tag,
        custom_error_type="model_kind",
        custom_error_message="model needs `arch: seed_cnn | mlp` or `path: <model file>`",
    ),
]


# ----------------------------------------------------------------------------- train
class TrainSpec(Strict):
    epochs: int = Field(5, ge=1, le=1000, description="Training epochs.")
    batch_size: int = Field(32, ge=1, le=65536, description="Mini-batch size.")
    optimizer: Literal["adam", "sgd", "rmsprop"] = Field("adam", description="Optimizer.")
    learning_rate: float = Field(1e-3, gt=0, le=10, description="Optimizer learning rate.")
    validation_split: float = Field(
        0.0, ge=0, lt=1, description="Fraction of training data held out for validation."
    )
    seed: int = Field(0, ge=0, description="Seed for weight init and batch order.")


class CalibrationSpec(Strict):
    samples: int = Field(100, ge=1, le=100000, description="Representative samples to draw.")
    split: Literal["train", "test"] = Field("train", description="Split to draw them from.")
    seed: int = Field(0, ge=0, description="Seed for drawing the samples.")
    path: str | None = Field(
        None, description="Bring your own: an .npz with key `x` (track it with `dvc add`)."
    )


# ----------------------------------------------------------------------------- gate
class GateSpec(Strict):
    min_accuracy: float | None = Field(None, ge=0, le=1, description="Minimum accuracy.")
    max_accuracy_drop: float | None = Field(
        None, ge=0, le=1, description="Maximum absolute accuracy drop against float TFLite."
    )
    max_relative_drop: float | None = Field(
        None, ge=0, le=1, description="Maximum drop as a fraction of float TFLite accuracy."
    )
    max_size_bytes: int | None = Field(None, ge=1, description="Maximum .tflite size.")
    min_compression_ratio: float | None = Field(
        None, ge=1, description="Minimum float size / variant size."
    )
    max_latency_ms: float | None = Field(
        None, gt=0, description="Maximum single-sample p50 latency in milliseconds."
    )
    min_margin_over_chance: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Sanity check: accuracy must exceed chance (1/classes) by this much, or the "
        "variant fails whatever the other thresholds say (catches broken evaluations).",
    )

    def merged(self, override: GateSpec | None) -> GateSpec:
        """A variant's override wins key by key over the pipeline default."""
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_unset=True))


# ----------------------------------------------------------------------------- variants
class VariantBase(Strict):
    name: Name
    gate: GateSpec | None = Field(None, description="Thresholds overriding the pipeline gate.")


class DynamicRangeVariant(VariantBase):
    kind: Literal["dynamic_range"] = Field(description="Int8 weights, float activations.")


class Float16Variant(VariantBase):
    kind: Literal["float16"] = Field(description="Float16 weights.")


class Int8FloatFallbackVariant(VariantBase):
    kind: Literal["int8_float_fallback"] = Field(
        description="Full integer with float fallback for ops without int8 kernels; float I/O."
    )


class Int8Variant(VariantBase):
    kind: Literal["int8"] = Field(description="Integer-only (TFLITE_BUILTINS_INT8).")
    io_type: Literal["int8", "uint8", "float32"] = Field(
        "int8", description="Type of the model's input and output tensors."
    )


class Int16x8Variant(VariantBase):
    kind: Literal["int16x8"] = Field(description="16-bit activations, 8-bit weights.")
    allow_float_fallback: bool = Field(False, description="Allow float kernels as fallback.")
    io_type: Literal["float32", "int16"] = Field("float32", description="Input/output type.")


class QatVariant(VariantBase):
    kind: Literal["qat"] = Field(description="Quantization-aware training (tfmot), then convert.")
    epochs: int = Field(1, ge=1, le=1000, description="Fine-tuning epochs after quantize_model.")
    learning_rate: float | None = Field(
        None, gt=0, description="Fine-tuning learning rate (default: the training one)."
    )
    io_type: Literal["float32", "int8", "uint8"] = Field("float32", description="I/O type.")


Variant = Annotated[
    DynamicRangeVariant
    | Float16Variant
    | Int8FloatFallbackVariant
    | Int8Variant
    | Int16x8Variant
    | QatVariant,
    Field(discriminator="kind"),
]


# ----------------------------------------------------------------------------- evaluation
class EvaluationSpec(Strict):
    threads: int = Field(1, ge=1, le=64, description="Interpreter threads (recorded).")
    warmup_runs: int = Field(50, ge=0, le=10000, description="Untimed single-sample runs first.")
    timed_runs: int = Field(500, ge=1, le=100000, description="Timed single-sample invocations.")
    batch_size: int = Field(256, ge=1, le=65536, description="Batch size for accuracy runs.")


# ----------------------------------------------------------------------------- publish
class PublishSpec(Strict):
    registry: str = Field("registry", description="Local registry directory.")
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

    def variant(self, name: str) -> Any:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"no variant {name!r}; have: {', '.join(v.name for v in self.variants)}")

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of this pipeline: the spec hash in manifests."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


class ExecutionSpec(Strict):
    max_workers: int = Field(
        2, ge=1, le=64, description="Worker processes for parallel steps (variants)."
    )
    artifacts: str = Field("artifacts", description="Folder for per-pipeline artifacts, "
                           "relative to the spec's folder and inside it.")

    @field_validator("artifacts")
    @classmethod
    def _inside_workspace(cls, v: str) -> str:
        """Artifacts are DVC outputs, and DVC tracks only files inside its repository."""
        p = PurePosixPath(v)
        if p.is_absolute() or ".." in p.parts:
            raise ValueError(f"artifacts {v!r} leaves the workspace; DVC outputs must stay "
                             "inside it: use a relative path without '..'")
        return v


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
