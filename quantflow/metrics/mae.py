"""Mean absolute error of a regression model, in the targets' own units."""

from __future__ import annotations

import numpy as np

HIGHER_IS_BETTER = False
TASKS = frozenset({"regression"})
PERCENT = False


def compute(y_true: np.ndarray, outputs: np.ndarray) -> float:
    return float(np.mean(np.abs(outputs.astype(np.float64) - y_true)))
