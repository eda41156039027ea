"""The one naming rule for stages: `<pipeline>-<step>[-<variant>]`.

The same name is the dvc.yaml stage, the `quantflow step` arguments and the artifact folder's
step. It lives in core, below the spec, so that the spec can refuse two pipelines or variants
whose stage names collide (`a-b` + `c` against `a` + `b-c`) when it loads, not when
dvc.yaml is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

STAGES = ("prepare", "train", "export", "quantize", "gate", "publish")
PER_VARIANT = "quantize"  # the one step with a stage per variant


def stage_name(step: str, pipeline: str, variant: str | None = None) -> str:
    """`<pipeline>-<step>[-<variant>]`: DVC allows only letters, digits, '_' and '-'."""
    return "-".join(part for part in (pipeline, step, variant) if part)


def pipeline_stage_names(pipeline: str, variants: Iterable[str]) \
        -> Iterator[tuple[str, int | None]]:
    """Every stage name of one pipeline, with the index of its variant (None: not per variant)."""
    names = list(variants)
    for step in STAGES:
        if step == PER_VARIANT:
            yield from ((stage_name(step, pipeline, v), i) for i, v in enumerate(names))
        else:
            yield stage_name(step, pipeline), None
