"""A variant against the float baseline: accuracy drop, relative drop, compression ratio.

Evaluation records these next to each variant's metrics and the gate checks them; both ask
this one function, so the numbers in metrics.json and the ones the gate decided on cannot
be computed two different ways.
"""

from __future__ import annotations

from dataclasses import dataclass

from quantflow.core.results import VariantMetrics


@dataclass(frozen=True)
class Comparison:
    accuracy_drop: float | None  # baseline accuracy - variant accuracy (positive: worse)
    relative_drop: float | None  # accuracy_drop as a fraction of the baseline accuracy
    compression_ratio: float | None  # baseline size / variant size


def against_baseline(accuracy: float | None, size_bytes: int | None,
                     base_accuracy: float | None, base_size: int | None,
                     recorded: VariantMetrics | None = None) -> Comparison:
    """Drops come from the two accuracies whenever both are known (the gate then follows the
    baseline it is given); where they are not, what evaluation ``recorded`` stands. A ratio
    evaluation recorded is kept; without one it is computed from the sizes."""
    if base_accuracy is not None and accuracy is not None:
        drop: float | None = base_accuracy - accuracy
    else:
        drop = recorded.accuracy_drop if recorded else None
    if drop is not None and base_accuracy:
        relative: float | None = drop / base_accuracy
    else:
        relative = recorded.relative_drop if recorded else None
    ratio = recorded.compression_ratio if recorded else None
    if ratio is None and base_size and size_bytes:
        ratio = base_size / size_bytes
    return Comparison(drop, relative, ratio)
