"""ROC AUC of a binary classifier: the chance that a random positive scores above a random
negative (ties count half), from the ranks of the scores (Mann-Whitney U); no threshold."""

from __future__ import annotations

import numpy as np

HIGHER_IS_BETTER = True
TASKS = frozenset({"binary"})
PERCENT = False


def compute(y_true: np.ndarray, outputs: np.ndarray) -> float:
    """0.5 when the test set holds one class only: the ranking then tells nothing."""
    from scipy.stats import rankdata

    positive = y_true.astype(bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    ranks = rankdata(outputs.reshape(len(y_true)))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
