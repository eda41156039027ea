"""How a variant differs from the float model on the same test inputs: a confidence interval
of its metric drop, its fidelity to the float outputs, and the sanity reference of its task.

A finite test set makes every metric a point estimate. The pairs (float output, variant
output) of one test example share that example's difficulty, so resampling them together
(a paired bootstrap) gives a far tighter and more honest interval of the *drop* than two
independent intervals would. Everything here is NumPy; the seed is fixed so that a re-run
records the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from quantflow.core.results import Fidelity, Sanity

LEVEL = 0.95
SEED = 0
# SQNR of identical outputs is infinite; JSON has no infinity, so it is recorded as this
# (float32 rounding alone gives ~140 dB, so nothing real reaches it).
SQNR_IDENTICAL_DB = 200.0

Score = Callable[[np.ndarray, np.ndarray], float]


def signed_drop(value: float, base: float, higher_is_better: bool) -> float:
    """How much worse ``value`` is than ``base``, positive = worse, in the metric's units."""
    return base - value if higher_is_better else value - base


def paired_interval(score: Score, y: np.ndarray, base: np.ndarray, out: np.ndarray,
                    higher_is_better: bool, samples: int,
                    seed: int = SEED) -> tuple[float, float] | None:
    """The central 95% interval of the drop over ``samples`` paired bootstrap resamples
    (percentile method); None without resamples."""
    if samples <= 0 or len(y) == 0:
        return None
    rng = np.random.default_rng(seed)
    drops = np.empty(samples)
    for i in range(samples):
        idx = rng.integers(0, len(y), len(y))
        drops[i] = signed_drop(score(y[idx], out[idx]), score(y[idx], base[idx]),
                               higher_is_better)
    low, high = np.percentile(drops, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
    return float(low), float(high)


def predictions(task: str, prepared: np.ndarray, threshold: float) -> np.ndarray | None:
    """Top-1 labels of a classifier, thresholded ones of a binary model; None for regression."""
    if task == "classification":
        return np.argmax(prepared, axis=-1)
    if task == "binary":
        return (prepared >= threshold).astype(np.int64)
    return None


def fidelity(task: str, base_raw: np.ndarray, raw: np.ndarray, base_prepared: np.ndarray,
             prepared: np.ndarray, threshold: float) -> Fidelity:
    """Agreement (%) of the predictions, and RMSE and SQNR (dB) of the raw outputs, against
    the float model: the damage signal quantization toolkits rank variants by."""
    ref, got = base_raw.astype(np.float64).ravel(), raw.astype(np.float64).ravel()
    if ref.shape != got.shape:
        raise ValueError(f"outputs have {raw.shape}, the float model's {base_raw.shape}")
    noise, power = float(np.sum((ref - got) ** 2)), float(np.sum(ref ** 2))
    if noise == 0:
        sqnr = SQNR_IDENTICAL_DB
    else:
        sqnr = min(SQNR_IDENTICAL_DB, 10 * math.log10(max(power, 1e-300) / noise))
    a, b = predictions(task, base_prepared, threshold), predictions(task, prepared, threshold)
    agreement = None if a is None else 100.0 * int(np.sum(a == b)) / len(a)
    return Fidelity(agreement_pct=agreement, output_rmse=math.sqrt(noise / max(len(ref), 1)),
                    sqnr_db=sqnr)


def sanity(task: str, y: np.ndarray, prepared: np.ndarray, y_train: np.ndarray,
           threshold: float) -> Sanity | None:
    """What a model that learned nothing would score, next to what this one scores: a binary
    model against always predicting the training majority class, a regression against always
    predicting the training mean. (Classification's chance level is 1/classes.)"""
    train = y_train if len(y_train) else y
    if task == "binary":
        majority = int(np.mean(train) >= 0.5)
        acc = float(np.mean((prepared >= threshold).astype(np.int64) == y))
        return Sanity(measure="accuracy", value=acc, trivial=float(np.mean(y == majority)),
                      trivial_name="the majority class", higher_is_better=True)
    if task == "regression":
        mean = np.mean(train.astype(np.float64), axis=0)
        mse = float(np.mean((prepared.astype(np.float64) - y) ** 2))
        return Sanity(measure="mse", value=mse, trivial=float(np.mean((y - mean) ** 2)),
                      trivial_name="the training mean", higher_is_better=False)
    return None
