"""Root mean squared error of a regression model, in the targets' own units: punishes the
rare large error that quantization of an output layer tends to cause more than MAE does."""

from __future__ import annotations

import numpy as np

HIGHER_IS_BETTER = False
TASKS = frozenset({"regression"})
PERCENT = False


def compute(y_true: np.ndarray, outputs: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(outputs.astype(np.float64) - y_true))))
