"""One threshold comparison, and the sanity checks that keep a broken evaluation from passing.

The gate builds every decision from these: each check keeps the measured value, the threshold
and a reason a person can read without the code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

from quantflow.core.results import Check, VariantMetrics

# Measured floats carry rounding noise (0.97 - 0.96 > 0.01); a threshold met to 1e-9 is met.
EPS = 1e-9
# A score within this many binomial standard errors of the trivial one cannot be told apart
# from guessing on the test set, so the sanity margin is never smaller than that noise.
NOISE_SIGMAS = 3.0

Fmt = Callable[[float], str]


def check(metric: str, value: float | None, threshold: float, bound: Literal["min", "max"],
          fmt: Fmt, what: str | None = None) -> Check:
    """One threshold comparison; a value that was never measured cannot pass. ``what`` names
    the value in the reason when it is not the metric itself (an interval's worst end)."""
    shown = what or metric
    if value is None or math.isnan(value):
        reason = f"{shown} was not measured (needs {bound} {fmt(threshold)})"
        return Check(metric=metric, value=None, threshold=threshold, passed=False, reason=reason)
    ok = value >= threshold - EPS if bound == "min" else value <= threshold + EPS
    op = {("min", True): ">=", ("min", False): "<", ("max", True): "<=", ("max", False): ">"}
    reason = f"{shown} {fmt(value)} {op[bound, ok]} {bound} {fmt(threshold)}"
    return Check(metric=metric, value=value, threshold=threshold, passed=ok, reason=reason)


def sanity_check(m: VariantMetrics, margin: float, fallback_classes: int | None = None) -> Check:
    """The model must beat one that learned nothing, whatever permissive thresholds a spec
    sets: chance level (1/classes) for a classifier, the majority class for a binary model,
    the training mean for a regression. Such a model must never be published."""
    if m.task != "classification":
        return _beats_trivial(m, margin)
    classes = m.num_classes or fallback_classes
    if not classes or classes < 2 or m.accuracy is None:
        what = "accuracy" if m.accuracy is None else "num_classes"
        reason = f"{what} was not recorded, so the model cannot be told apart from guessing"
        return Check(metric="accuracy_over_chance", value=m.accuracy, threshold=1.0,
                     passed=False, reason=reason)
    chance, acc = 1.0 / classes, m.accuracy
    noise = _noise(chance, m.test_examples)
    threshold = chance + max(margin, noise)
    ok = acc >= threshold - EPS and acc > chance
    if ok:
        reason = (f"accuracy {acc:.4f} is clear of chance level ({chance:.2f}), needs >= "
                  f"{threshold:.4f}")
    elif acc - chance < max(noise, 0.01):
        reason = (f"accuracy {acc:.4f} is at chance level ({chance:.2f}) - broken model or "
                  "evaluation")
    else:
        reason = (f"accuracy {acc:.4f} is only {acc - chance:.4f} above chance level "
                  f"({chance:.2f}), needs >= {threshold:.4f} - broken model or evaluation?")
    return Check(metric="accuracy_over_chance", value=acc, threshold=threshold, passed=ok,
                 reason=reason)


def _noise(p: float, n: int | None) -> float:
    return NOISE_SIGMAS * math.sqrt(p * (1 - p) / n) if n else 0.0


def _beats_trivial(m: VariantMetrics, margin: float) -> Check:
    """binary: accuracy above the majority class's share by the sampling noise (the chance
    margin cannot apply: a 95% majority leaves 5 pp to beat it by); regression: an MSE at
    most (1 - margin) of the training mean's, i.e. an R^2 of at least ``margin``."""
    s = m.sanity
    name = "accuracy_over_majority" if m.task == "binary" else "mse_under_mean"
    if s is None:
        return Check(metric=name, value=None, threshold=0.0, passed=False,
                     reason="the sanity reference was not recorded, so the model cannot be "
                     "told apart from one that learned nothing")
    if s.higher_is_better:
        threshold = min(s.trivial + _noise(s.trivial, m.test_examples), 1.0)
        ok = s.value >= threshold - EPS and s.value > s.trivial
        need = f"needs > {s.trivial:.4f} by the sampling noise (>= {threshold:.4f})"
    else:
        threshold = (1 - margin) * s.trivial
        ok = s.value <= threshold + EPS and s.value < s.trivial
        need = f"needs <= {threshold:.4g} (R^2 >= {margin:g})"
    verdict = "beats" if ok else "does not beat"
    reason = (f"{s.measure} {s.value:.4g} {verdict} predicting {s.trivial_name} "
              f"({s.trivial:.4g}), {need}{'' if ok else ' - broken model or evaluation?'}")
    return Check(metric=name, value=s.value, threshold=threshold, passed=ok, reason=reason)
