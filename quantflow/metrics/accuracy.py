"""Top-1 accuracy: the fraction of test examples whose largest output is the true label."""

from __future__ import annotations

import numpy as np

HIGHER_IS_BETTER = True
TASKS = frozenset({"classification"})


def compute(y_true: np.ndarray, outputs: np.ndarray) -> float:
    """Counted as an integer, then divided once, so the value is exact for any test size."""
    return int(np.sum(np.argmax(outputs, axis=-1) == y_true)) / len(y_true)
