"""Every artifact location, derived from the spec in one place.

dvc.yaml, the step functions, the Prefect tasks and the publisher all ask this module for paths;
none of them joins path pieces on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from quantflow.core.spec import PipelineSpec, Spec

SPEC_FILE = "pipelines.yaml"


@dataclass(frozen=True)
class PipelinePaths:
    """Artifact layout of one pipeline, relative to the workspace (the folder of the spec)."""

    workspace: Path
    name: str
    artifacts: str = "artifacts"
    registry_dir: str = "registry"
    trained_name: str = "model.keras"  # what train hands export: see ModelBase.trained_name

    @property
    def root(self) -> Path:
        return self.workspace / self.artifacts / self.name

    # prepare
    @property
    def dataset(self) -> Path:
        return self.root / "prepare" / "dataset.npz"

    @property
    def calibration(self) -> Path:
        return self.root / "prepare" / "calibration.npz"

    @property
    def prepare_info(self) -> Path:
        return self.root / "prepare" / "info.json"

    # train
    @property
    def trained(self) -> Path:
        return self.root / "train" / self.trained_name

    @property
    def train_info(self) -> Path:
        return self.root / "train" / "history.json"

    # export (float baseline)
    @property
    def export_dir(self) -> Path:
        return self.root / "export"

    @property
    def saved_model(self) -> Path:
        return self.export_dir / "saved_model"

    @property
    def float_tflite(self) -> Path:
        return self.export_dir / "float.tflite"

    @property
    def calibrated(self) -> Path:
        """A cache, not a DVC output: the calibrated float model the converter's integer kinds
        share, one file named by what it depends on (variants/_calibrated.py)."""
        return self.export_dir / "calibrated"

    @property
    def baseline_metrics(self) -> Path:
        return self.export_dir / "metrics.json"

    @property
    def float_outputs(self) -> Path:
        """The float model's raw test outputs: every variant's fidelity and paired interval
        are measured against them."""
        return self.export_dir / "outputs.npy"

    # quantize: one folder per variant, so a failed variant still has an output (its metrics)
    @property
    def variants_dir(self) -> Path:
        return self.root / "variants"

    def variant_dir(self, variant: str) -> Path:
        return self.variants_dir / variant

    def variant_tflite(self, variant: str) -> Path:
        return self.variant_dir(variant) / "model.tflite"

    def variant_metrics(self, variant: str) -> Path:
        return self.variant_dir(variant) / "metrics.json"

    # gate
    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def gate(self) -> Path:
        return self.root / "gate.json"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def plot(self) -> Path:
        return self.root / "variants.csv"

    @property
    def report_html(self) -> Path:
        """The self-contained page (charts inline); also copied into each published version."""
        return self.root / "report.html"

    @property
    def latency_plot(self) -> Path:
        """p50/p95 per model, long format (one bar per row) for DVC's bar_horizontal."""
        return self.root / "latency.csv"

    # publish
    @property
    def publish_record(self) -> Path:
        return self.root / "publish.json"

    # logs of `quantflow run` (not a DVC output: every run writes a new file)
    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def lock(self) -> Path:
        return self.workspace / self.artifacts / f".{self.name}.lock"

    @property
    def registry(self) -> Path:
        return self.workspace / self.registry_dir / self.name


def pipeline_paths(spec: Spec, name: str, workspace: Path) -> PipelinePaths:
    """The single function that turns (spec, pipeline, workspace) into artifact paths."""
    pipeline: PipelineSpec = spec.pipelines[name]
    return PipelinePaths(
        workspace=workspace,
        name=name,
        artifacts=spec.execution.artifacts,
        registry_dir=pipeline.publish.registry,
        trained_name=pipeline.model.trained_name(),
    )
