"""DVC integration: DVC owns what is stale, Prefect owns how it runs.

Until dvc.yaml knows a pipeline, ``stale_stages`` returns None (run everything) and
``commit_run`` does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quantflow.plan import Plan
    from quantflow.steps import StepContext


@dataclass
class Stale:
    stages: set[str]
    variants: list[str] = field(default_factory=list)


def stale_stages(ctx: StepContext, spec_file: str) -> Stale | None:
    return None


def commit_run(plan: Plan) -> None:
    return None
