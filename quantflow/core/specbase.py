"""The pieces of the spec that plugin modules build on: base classes, names, gate and training.

Variant kinds (``quantflow.variants.<kind>``) and model sources (``quantflow.sources.<name>``)
define their spec classes on top of these. ``quantflow.core.spec`` imports the discovered
plugins to build its unions, so this module must import none of them (that would be a cycle).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
Name = Annotated[
    str,
    StringConstraints(pattern=NAME_PATTERN),
    Field(description="Letters, digits, '_' or '-', starting with a letter (max 64)."),
]
Fraction = Annotated[float, Field(gt=0, lt=1)]

# Integer I/O types a variant may ask for; each is also the numpy and `tf` dtype of that name.
INTEGER_IO = ("int8", "uint8", "int16")

# What each capability a kind may require means, in the words of the validate error.
CAPABILITY_NAMES = {
    "keras2": "a Keras 2 (tf_keras) model",
    "saved_model": "a SavedModel or Keras model",
    "tflite": "a .tflite model",
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainSpec(Strict):
    epochs: int = Field(5, ge=1, le=1000, description="Training epochs.")
    batch_size: int = Field(32, ge=1, le=65536, description="Mini-batch size.")
    optimizer: Literal["adam", "sgd", "rmsprop"] = Field("adam", description="Optimizer.")
    learning_rate: float = Field(1e-3, gt=0, le=10, description="Optimizer learning rate.")
    validation_split: float = Field(
        0.0, ge=0, lt=1, description="Fraction of training data held out for validation."
    )
    seed: int = Field(0, ge=0, description="Seed for weight init and batch order.")


class GateSpec(Strict):
    min_accuracy: float | None = Field(
        None, ge=0, le=1, description="Minimum top-1 accuracy (classification and binary)."
    )
    max_accuracy_drop: float | None = Field(
        None, ge=0, le=1, description="Maximum top-1 accuracy drop against float TFLite "
        "(a fraction; classification and binary)."
    )
    max_relative_drop: float | None = Field(
        None, ge=0, le=1, description="Maximum drop as a fraction of the float TFLite metric."
    )
    max_metric_drop: float | None = Field(
        None, ge=0, description="Maximum drop of the primary metric against float TFLite, in "
        "the metric's own units (a fraction for accuracy: 0.01 is 1 pp); positive = worse.",
    )
    min_metric: float | None = Field(
        None, description="Floor of the primary metric (metrics where higher is better)."
    )
    max_metric: float | None = Field(
        None, description="Ceiling of the primary metric (metrics where lower is better)."
    )
    min_agreement: float | None = Field(
        None, ge=0, le=100, description="classification/binary: minimum top-1 agreement with "
        "the float TFLite model's predictions on the test set, in %.",
    )
    min_sqnr_db: float | None = Field(
        None, description="Minimum SQNR of the outputs against the float TFLite outputs, in dB."
    )
    decide_on: Literal["point", "upper_bound"] = Field(
        "point", description="Drop thresholds judge the measured drop (point) or the worst end "
        "of its 95% paired interval (upper_bound: passes only when the test set shows it).",
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


@dataclass(frozen=True)
class Expected:
    """What a kind promises: I/O dtype (None: not checked), a weight dtype it must store,
    and weight dtypes it must not store."""

    io: str | None
    weights: str | None
    forbidden: tuple[str, ...] = ()


class VariantBase(Strict):
    """A variant kind's spec class; its module is ``quantflow.variants.<kind>``.

    Besides its fields (``kind: Literal["<kind>"]`` and options), a kind declares what the
    pipeline must know about it without running it: ``needs_calibration`` (the quantize stage
    reads the representative data), ``requires`` (capabilities the model source must offer;
    read on a variant it may depend on its options, read on the class it is the defaults'),
    ``requires_with`` (an option, as YAML, that changes what the kind requires -> what it then
    requires: how an error names the option that would fit the model) and ``promise()``
    (the tensor types its output must have, checked after conversion).
    ``order`` only places it in lists shown to users (error messages, the schema).
    """

    needs_calibration: ClassVar[bool]
    requires: ClassVar[frozenset[str]] = frozenset()
    requires_with: ClassVar[dict[str, frozenset[str]]] = {}
    order: ClassVar[int] = 1000
    # It trains (QAT): its worker gets every core, and it starts first (the critical path).
    trains: ClassVar[bool] = False

    name: Name
    gate: GateSpec | None = Field(None, description="Thresholds overriding the pipeline gate.")

    def promise(self) -> Expected:
        raise NotImplementedError(f"{type(self).__name__} does not say what it promises")


class ModelBase(Strict):
    """A model source's spec class; its module is ``quantflow.sources.<name>``.

    A source is chosen by ``arch: <name>`` unless it sets ``selected_by`` to a key whose
    presence chooses it (``path``); ``usage`` is how the "model needs ..." error shows such a
    source. ``trains`` says whether the train step fits it; ``capabilities`` are what variant
    kinds may require (``keras2``: a tf_keras model, which tfmot's QAT needs); ``files()`` are
    the user files it reads, which DVC tracks and `validate` checks.
    """

    trains: ClassVar[bool]
    capabilities: ClassVar[frozenset[str]]
    selected_by: ClassVar[str] = "arch"
    usage: ClassVar[str] = ""
    order: ClassVar[int] = 1000

    def files(self) -> dict[str, str]:
        """{key of this mapping naming the file: path relative to the workspace}."""
        return {}

    def provides(self) -> frozenset[str]:
        """What this model offers; a source whose answer depends on the file (``path``)
        narrows its class-level ``capabilities`` here."""
        return self.capabilities

    def describe(self) -> str:
        """How the validate error names this model when a kind does not apply to it."""
        return f"the model is {self.__class__.__name__}"

    def trained_name(self) -> str:
        """The file (or folder) name under ``train/`` that hands the model to export."""
        return "model.keras"

    def signature_key(self) -> str:
        """The SavedModel signature the converters use (ours are always serving_default)."""
        return "serving_default"
