"""Pipeline steps as plain functions. Stage names are the same everywhere:

prepare -> train -> export -> quantize (one per variant) -> gate -> publish

The Prefect tasks (tasks/), the dvc.yaml stages (`quantflow step <stage> ...`) and the CLI all
call ``run(ctx)`` of the module with the stage's name. Steps know nothing of Prefect or DVC.

Each step module also declares ``READS``: the key paths of its pipeline's spec that it reads,
relative to the pipeline. dvc.yaml's params are derived from them (quantflow.versioning.dvcgen)
and tests/steps/test_reads.py runs every step on a recording proxy of the spec that fails on an
undeclared read. In a pattern, ``{variant}`` is the index of the step's own variant, ``*`` any
index, and a leading ``-`` excludes a sub-key (a variant's ``gate`` is the gate's to read).
"""

from __future__ import annotations

from importlib import import_module

from quantflow.core.request import StepContext
from quantflow.core.stages import STAGES

# Read by every step without being a param: names are identities (a rename is a new stage).
STRUCTURAL = ("variants.*.name",)

__all__ = ["STAGES", "STRUCTURAL", "StepContext", "declared_reads"]


def declared_reads(stage: str) -> tuple[str, ...]:
    """The READS declaration of ``stage``'s module (cheap: step modules import no TensorFlow
    at module level)."""
    return tuple(import_module(f"quantflow.steps.{stage}").READS)
