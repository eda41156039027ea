"""Typed values that steps hand to each other (and write as JSON next to the artifacts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from quantflow.core import io

T = TypeVar("T", bound=BaseModel)


class Result(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def write(self, path: Path) -> Path:
        """Write atomically (temp file, fsync, rename): a kill never leaves half a JSON file."""
        return io.write_text(path, self.model_dump_json(indent=2) + "\n")

    @classmethod
    def read(cls: type[T], path: Path) -> T:
        return cls.model_validate(json.loads(Path(path).read_text()))


class Latency(Result):
    p50_ms: float
    p95_ms: float
    mean_ms: float
    threads: int
    warmup_runs: int
    timed_runs: int


class TensorTypes(Result):
    input_dtype: str = Field(description="dtype of the first input tensor, e.g. 'int8'.")
    output_dtype: str
    input_quantization: tuple[float, int] | None = Field(None, description="(scale, zero_point)")
    weight_dtypes: dict[str, int] = Field(
        default_factory=dict, description="Count of constant (weight) tensors per dtype."
    )


class Fidelity(Result):
    """How faithfully a variant reproduces the float TFLite model on the same test inputs."""

    agreement_pct: float | None = Field(
        None, description="Top-1 predictions equal to the float model's, in % (not regression).")
    output_rmse: float = Field(description="RMSE of the raw outputs against the float outputs.")
    sqnr_db: float = Field(description="10 log10(signal / noise power) of the outputs, in dB "
                           "(200 = identical).")


class Sanity(Result):
    """The model against a predictor that learned nothing, on the same test set."""

    measure: Literal["accuracy", "mse"]
    value: float
    trivial: float = Field(description="What the trivial predictor scores on `measure`.")
    trivial_name: str
    higher_is_better: bool


class VariantMetrics(Result):
    """What evaluation measured for one model (the float baseline or a variant).

    Drops are positive when the variant is worse, in the primary metric's own units (a
    fraction for accuracy metrics); ``drop_low``/``drop_high`` bound its 95% paired interval.
    """

    name: str
    kind: str
    status: Literal["ok", "failed"] = "ok"
    error: str | None = None
    task: str = "classification"
    metric: str = "accuracy"
    higher_is_better: bool = True
    percent: bool = Field(True, description="The metric is a fraction shown in % (drops in pp).")
    metric_value: float | None = None
    metric_drop: float | None = None
    drop_low: float | None = None
    drop_high: float | None = None
    logits: bool | None = Field(None, description="binary: the model outputs a logit.")
    fidelity: Fidelity | None = None
    sanity: Sanity | None = None
    accuracy: float | None = None
    num_classes: int | None = None
    test_examples: int | None = None
    size_bytes: int | None = None
    compression_ratio: float | None = None
    accuracy_drop: float | None = None
    relative_drop: float | None = None
    latency: Latency | None = None
    tensors: TensorTypes | None = None
    convert_seconds: float | None = None
    evaluate_seconds: float | None = None
    sha256: str | None = Field(None, description=(
        "sha256 of the .tflite file this evaluation measured: publish refuses any other bytes."))


class Check(Result):
    metric: str
    value: float | None
    threshold: float
    passed: bool
    reason: str


class VariantDecision(Result):
    name: str
    passed: bool
    checks: list[Check] = Field(default_factory=list)
    reason: str


class GateResult(Result):
    pipeline: str
    decisions: list[VariantDecision]
    selected: list[str] = Field(description="Variants the publish strategy will publish.")
    notes: list[str] = Field(
        default_factory=list, description="What the numbers cannot tell (test set too small).")

    @property
    def passed(self) -> list[str]:
        return [d.name for d in self.decisions if d.passed]


class PublishRecord(Result):
    pipeline: str
    status: Literal["published", "blocked", "unchanged"] = Field(description=(
        "published: a new version; blocked: nothing passed the gate; unchanged: the alias's "
        "version already holds these bytes and decisions, so nothing new was written."))
    version: str | None = None
    path: str | None = Field(None, description=(
        "The version folder (publish.json records it relative to the workspace)."))
    files: list[str] = Field(default_factory=list)
    alias: str | None = None
    message: str = ""
