"""Pipeline steps as plain functions. Stage names are the same everywhere:

prepare -> train -> export -> quantize (one per variant) -> gate -> publish

The Prefect tasks (tasks/), the dvc.yaml stages (`quantflow step <stage> ...`) and the CLI all
call ``run(ctx)`` of the module with the stage's name. Steps know nothing of Prefect or DVC.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from quantflow.core.paths import PipelinePaths, pipeline_paths
from quantflow.core.spec import PipelineSpec, Spec

STAGES = ("prepare", "train", "export", "quantize", "gate", "publish")


@dataclass(frozen=True)
class StepContext:
    """What every step needs: the validated spec, which pipeline, and where the workspace is."""

    spec: Spec
    name: str
    workspace: Path

    @property
    def pipeline(self) -> PipelineSpec:
        return self.spec.pipelines[self.name]

    @property
    def paths(self) -> PipelinePaths:
        return pipeline_paths(self.spec, self.name, self.workspace)
