"""Top-1 accuracy: the fraction of test examples whose predicted class is the true label.

Classification predicts the largest output; a binary model's outputs arrive as the
probability of class 1 (see ``quantflow.metrics.prepare``) and predict 1 at ``threshold``.
"""

from __future__ import annotations

import numpy as np

HIGHER_IS_BETTER = True
TASKS = frozenset({"classification", "binary"})
PERCENT = True


def compute(y_true: np.ndarray, outputs: np.ndarray, threshold: float = 0.5) -> float:
    """Counted as an integer, then divided once, so the value is exact for any test size."""
    if outputs.ndim == 1:
        predicted = (outputs >= threshold).astype(np.int64)
    else:
        predicted = np.argmax(outputs, axis=-1)
    return int(np.sum(predicted == y_true)) / len(y_true)
