"""A variant against the float baseline: metric drop, relative drop, compression ratio.

Evaluation records these next to each variant's metrics and the gate checks them; both ask
this one function, so the numbers in metrics.json and the ones the gate decided on cannot
be computed two different ways. One sign convention everywhere: a drop is positive when the
variant is worse, whichever way its metric points.
"""

from __future__ import annotations

from dataclasses import dataclass

from quantflow.core.results import VariantMetrics


@dataclass(frozen=True)
class Comparison:
    drop: float | None  # how much worse than the baseline, in the metric's units (+: worse)
    relative_drop: float | None  # drop as a fraction of the baseline's |value|
    compression_ratio: float | None  # baseline size / variant size


def against_baseline(value: float | None, size_bytes: int | None,
                     base_value: float | None, base_size: int | None,
                     recorded: VariantMetrics | None = None,
                     higher_is_better: bool = True) -> Comparison:
    """Drops come from the two values whenever both are known (the gate then follows the
    baseline it is given); where they are not, what evaluation ``recorded`` stands. A ratio
    evaluation recorded is kept; without one it is computed from the sizes."""
    if base_value is not None and value is not None:
        drop: float | None = base_value - value if higher_is_better else value - base_value
    else:
        drop = recorded.metric_drop if recorded else None
    if drop is not None and base_value:
        relative: float | None = drop / abs(base_value)
    else:
        relative = recorded.relative_drop if recorded else None
    ratio = recorded.compression_ratio if recorded else None
    if ratio is None and base_size and size_bytes:
        ratio = base_size / size_bytes
    return Comparison(drop, relative, ratio)
