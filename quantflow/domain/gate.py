"""The quality gate: measured metrics + spec thresholds -> typed pass/fail decisions.

Every check keeps the measured value, the threshold and a human reason, so the report prints the
decision and the publisher obeys it without deriving anything again. The gate itself never
raises on a bad model: a broken variant or baseline is a failed decision with its reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

from quantflow.core.results import Check, GateResult, VariantDecision, VariantMetrics
from quantflow.core.spec import GateSpec, PipelineSpec, PublishSpec
from quantflow.domain.compare import against_baseline

# Measured floats carry rounding noise (0.97 - 0.96 > 0.01); a threshold met to 1e-9 is met.
EPS = 1e-9
# An accuracy within this many binomial standard errors of chance cannot be told apart from
# guessing on the test set, so the sanity margin is never smaller than that noise.
NOISE_SIGMAS = 3.0

_FMT: dict[str, Callable[[float], str]] = {
    "accuracy": "{:.4f}".format,
    "accuracy_drop": "{:.4f}".format,
    "relative_drop": "{:.2%}".format,
    "size_bytes": "{:,.0f} bytes".format,
    "compression_ratio": "{:.2f}x".format,
    "latency_p50_ms": "{:.3f} ms".format,
}


def _check(
    metric: str, value: float | None, threshold: float, bound: Literal["min", "max"]
) -> Check:
    """One threshold comparison; a value that was never measured cannot pass."""
    fmt = _FMT[metric]
    if value is None or math.isnan(value):
        reason = f"{metric} was not measured (needs {bound} {fmt(threshold)})"
        return Check(metric=metric, value=None, threshold=threshold, passed=False, reason=reason)
    ok = value >= threshold - EPS if bound == "min" else value <= threshold + EPS
    op = {("min", True): ">=", ("min", False): "<", ("max", True): "<=", ("max", False): ">"}
    reason = f"{metric} {fmt(value)} {op[bound, ok]} {bound} {fmt(threshold)}"
    return Check(metric=metric, value=value, threshold=threshold, passed=ok, reason=reason)


def sanity_check(m: VariantMetrics, margin: float, fallback_classes: int | None = None) -> Check:
    """Accuracy near 1/classes means the model guesses (or evaluation is broken), whatever
    permissive thresholds a spec sets; such a model must never be published."""
    classes = m.num_classes or fallback_classes
    if not classes or classes < 2 or m.accuracy is None:
        what = "accuracy" if m.accuracy is None else "num_classes"
        reason = f"{what} was not recorded, so the model cannot be told apart from guessing"
        return Check(
            metric="accuracy_over_chance",
            value=m.accuracy,
            threshold=1.0,
            passed=False,
            reason=reason,
        )
    chance, acc = 1.0 / classes, m.accuracy
    noise = (
        NOISE_SIGMAS * math.sqrt(chance * (1 - chance) / m.test_examples) if m.test_examples else 0
    )
    threshold = chance + max(margin, noise)
    ok = acc >= threshold - EPS and acc > chance
    if ok:
        reason = (
            f"accuracy {acc:.4f} is clear of chance level ({chance:.2f}), needs >= {threshold:.4f}"
        )
    elif acc - chance < max(noise, 0.01):
        reason = (
            f"accuracy {acc:.4f} is at chance level ({chance:.2f}) - broken model or evaluation"
        )
    else:
        reason = (
            f"accuracy {acc:.4f} is only {acc - chance:.4f} above chance level ({chance:.2f}),"
            f" needs >= {threshold:.4f} - broken model or evaluation?"
        )
    return Check(
        metric="accuracy_over_chance", value=acc, threshold=threshold, passed=ok, reason=reason
    )


def baseline_problem(spec: PipelineSpec, baseline: VariantMetrics) -> str | None:
    """Drops and ratios are relative to the float baseline: if it is broken, nothing is."""
    if baseline.status == "failed":
        return f"float baseline failed: {baseline.error or 'no error recorded'}"
    check = sanity_check(baseline, spec.gate.min_margin_over_chance)
    return None if check.passed else f"float baseline {check.reason}"


def _checks(gate: GateSpec, m: VariantMetrics, baseline: VariantMetrics) -> list[Check]:
    """Drop and ratio come from the baseline when possible (one function, shared with
    evaluation), falling back to what evaluation recorded."""
    base_acc = baseline.accuracy if baseline.status == "ok" else None
    vs = against_baseline(m.accuracy, m.size_bytes, base_acc, baseline.size_bytes, recorded=m)
    p50 = m.latency.p50_ms if m.latency else None
    wanted: list[tuple[str, float | None, float | None, Literal["min", "max"]]] = [
        ("accuracy", m.accuracy, gate.min_accuracy, "min"),
        ("accuracy_drop", vs.accuracy_drop, gate.max_accuracy_drop, "max"),
        ("relative_drop", vs.relative_drop, gate.max_relative_drop, "max"),
        ("size_bytes", m.size_bytes, gate.max_size_bytes, "max"),
        ("compression_ratio", vs.compression_ratio, gate.min_compression_ratio, "min"),
        ("latency_p50_ms", p50, gate.max_latency_ms, "max"),
    ]
    sanity = sanity_check(m, gate.min_margin_over_chance, baseline.num_classes)
    return [sanity] + [_check(k, v, t, b) for k, v, t, b in wanted if t is not None]


def _decide_one(
    spec: PipelineSpec, m: VariantMetrics, baseline: VariantMetrics, problem: str | None
) -> VariantDecision:
    """A failed conversion/evaluation fails with its own error; otherwise every check counts."""
    if m.status == "failed":
        checks: list[Check] = []
        failed = [f"{m.kind} failed: {m.error or 'no error recorded'}"]
    else:
        checks = _checks(spec.gate.merged(spec.variant(m.name).gate), m, baseline)
        failed = [c.reason for c in checks if not c.passed]
    if problem:
        failed.insert(0, f"{problem}; nothing can pass")
    reason = "; ".join(failed) if failed else f"all {len(checks)} checks passed"
    return VariantDecision(name=m.name, passed=not failed, checks=checks, reason=reason)


_OBJECTIVES: dict[str, Callable[[VariantMetrics], float]] = {
    "smallest_size": lambda m: m.size_bytes if m.size_bytes is not None else math.inf,
    "highest_accuracy": lambda m: -m.accuracy if m.accuracy is not None else math.inf,
    "lowest_latency": lambda m: m.latency.p50_ms if m.latency else math.inf,
}


def select(
    publish: PublishSpec, decisions: list[VariantDecision], metrics: dict[str, VariantMetrics]
) -> list[str]:
    """What the publish strategy will publish; ties go to the smaller name so runs are stable."""
    passing = [d.name for d in decisions if d.passed]
    if publish.strategy == "all_passing" or not passing:
        return passing
    key = _OBJECTIVES[publish.objective]
    return [min(passing, key=lambda name: (key(metrics[name]), name))]


def decide(
    pipeline: str, spec: PipelineSpec, baseline: VariantMetrics, variants: list[VariantMetrics]
) -> GateResult:
    """Decide every variant of the spec (in spec order); a variant without metrics fails."""
    by_name = {m.name: m for m in variants}
    if len(by_name) != len(variants):
        raise ValueError(f"duplicate variant metrics: {sorted(m.name for m in variants)}")
    unknown = sorted(set(by_name) - {v.name for v in spec.variants})
    if unknown:
        raise ValueError(f"metrics for variants not in pipeline {pipeline!r}: {', '.join(unknown)}")
    problem = baseline_problem(spec, baseline)
    decisions = [
        _decide_one(spec, by_name[v.name], baseline, problem)
        if v.name in by_name
        else VariantDecision(name=v.name, passed=False, reason="no metrics were recorded")
        for v in spec.variants
    ]
    return GateResult(
        pipeline=pipeline, decisions=decisions, selected=select(spec.publish, decisions, by_name)
    )
