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
from quantflow.domain import units
from quantflow.domain.checks import check, sanity_check
from quantflow.domain.compare import against_baseline

__all__ = ["decide", "sanity_check", "select"]

_PLAIN: dict[str, Callable[[float], str]] = {
    "accuracy": "{:.4f}".format,
    "relative_drop": "{:.2%}".format,
    "agreement_pct": "{:.2f}%".format,
    "sqnr_db": "{:.1f} dB".format,
    "size_bytes": "{:,.0f} bytes".format,
    "compression_ratio": "{:.2f}x".format,
    "latency_p50_ms": "{:.3f} ms".format,
}
Wanted = tuple[str, float | None, float | None, Literal["min", "max"]]


def value_of(m: VariantMetrics) -> float | None:
    """The primary metric; metrics recorded before it existed had accuracy only."""
    if m.metric_value is None and m.metric == "accuracy":
        return m.accuracy
    return m.metric_value


def drop_of(m: VariantMetrics) -> float | None:
    """The primary metric's drop (positive = worse), with the same fallback as ``value_of``."""
    if m.metric_drop is None and m.metric == "accuracy":
        return m.accuracy_drop
    return m.metric_drop


def baseline_problem(spec: PipelineSpec, baseline: VariantMetrics) -> str | None:
    """Drops and ratios are relative to the float baseline: if it is broken, nothing is."""
    if baseline.status == "failed":
        return f"float baseline failed: {baseline.error or 'no error recorded'}"
    sanity = sanity_check(baseline, spec.gate.min_margin_over_chance)
    return None if sanity.passed else f"float baseline {sanity.reason}"


def _drops(gate: GateSpec, m: VariantMetrics, baseline: VariantMetrics) -> list[Check]:
    """Drop thresholds on the point drop, or (decide_on: upper_bound) on the worst end of its
    95% paired interval: a pass must then hold for the whole interval, not only its middle."""
    ok = baseline.status == "ok"
    base = value_of(baseline) if ok else None
    vs = against_baseline(value_of(m), m.size_bytes, base, baseline.size_bytes, recorded=m,
                          higher_is_better=m.higher_is_better)
    acc = (baseline.accuracy - m.accuracy if ok and None not in (m.accuracy, baseline.accuracy)
           else m.accuracy_drop)
    upper = gate.decide_on == "upper_bound"
    drop = m.drop_high if upper else vs.drop
    acc_drop = m.drop_high if upper and m.metric == "accuracy" else acc
    relative = (drop / abs(base) if upper and drop is not None and base else vs.relative_drop)
    worst = "upper end of the 95% interval of " if upper else ""
    name, pp = units.label(m.metric), m.percent
    out = []
    for key, value, limit, fmt_pp, what in (
        (f"{name}_drop", drop, gate.max_metric_drop, pp, f"{worst}{name} drop"),
        ("accuracy_drop", acc_drop, gate.max_accuracy_drop, True,
         f"{worst if m.metric == 'accuracy' else ''}accuracy drop"),
        ("relative_drop", relative, gate.max_relative_drop, None, f"{worst}relative drop"),
    ):
        if limit is not None:
            fmt = _PLAIN["relative_drop"] if fmt_pp is None else \
                (lambda v, p=fmt_pp: units.show_drop(v, p))
            out.append(check(key, value, limit, "max", fmt, what))
    return out


def _checks(gate: GateSpec, m: VariantMetrics, baseline: VariantMetrics) -> list[Check]:
    """The sanity check, then every threshold the gate sets; drop and ratio come from the
    baseline when possible (one function, shared with evaluation)."""
    name, value = units.label(m.metric), value_of(m)
    fid = m.fidelity
    vs = against_baseline(None, m.size_bytes, None, baseline.size_bytes, recorded=m)
    wanted: list[Wanted] = [
        ("agreement_pct", fid and fid.agreement_pct, gate.min_agreement, "min"),
        ("sqnr_db", fid and fid.sqnr_db, gate.min_sqnr_db, "min"),
        ("size_bytes", m.size_bytes, gate.max_size_bytes, "max"),
        ("compression_ratio", vs.compression_ratio, gate.min_compression_ratio, "min"),
        ("latency_p50_ms", m.latency.p50_ms if m.latency else None, gate.max_latency_ms, "max"),
    ]
    out = [sanity_check(m, gate.min_margin_over_chance, baseline.num_classes)]
    if gate.min_accuracy is not None:
        out.append(check("accuracy", m.accuracy, gate.min_accuracy, "min", _PLAIN["accuracy"]))
    for limit, bound in ((gate.min_metric, "min"), (gate.max_metric, "max")):
        if limit is not None:
            out.append(check(name, value, limit, bound,  # type: ignore[arg-type]
                             lambda v: units.show_value(v, m.percent)))
    out += _drops(gate, m, baseline)
    return out + [check(k, v, t, b, _PLAIN[k]) for k, v, t, b in wanted if t is not None]


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
    # "accuracy" is the primary metric here, whichever way it points (mae: the lowest).
    "highest_accuracy": lambda m: math.inf if value_of(m) is None else
    -value_of(m) if m.higher_is_better else value_of(m),  # type: ignore[operator]
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
    notes = [n for m in variants for n in resolution_notes(spec.gate.merged(
        spec.variant(m.name).gate), m)]
    return GateResult(pipeline=pipeline, decisions=decisions,
                      selected=select(spec.publish, decisions, by_name), notes=notes)


def resolution_notes(gate: GateSpec, m: VariantMetrics) -> list[str]:
    """Where the test set cannot tell a pass from a fail: a drop threshold finer than one test
    example of an accuracy metric, or a 95% interval of the drop that straddles it."""
    notes: list[str] = []
    n, name = m.test_examples, units.label(m.metric)
    limits = [(f"{name} drop", gate.max_metric_drop, m.percent)]
    if m.metric != "accuracy":
        limits.append(("accuracy drop", gate.max_accuracy_drop, True))
    else:
        limits[0] = ("accuracy drop", gate.max_metric_drop or gate.max_accuracy_drop, True)
    for what, limit, percent in limits:
        if not limit or m.status != "ok":
            continue
        if percent and n and n * limit < 1:
            notes.append(f"{m.name}: one test example is {100 / n:.2f} pp, more than the "
                         f"{100 * limit:.2f} pp max {what}: {n} examples cannot resolve it "
                         f"(needs at least {math.ceil(1 / limit)})")
        elif what.startswith(name) and m.drop_low is not None and m.drop_high is not None \
                and m.drop_low <= limit < m.drop_high:
            shown = units.show_drop(m.metric_drop, percent, m.drop_low, m.drop_high)
            notes.append(f"{m.name}: the {what} {shown} straddles the max "
                         f"{units.show_drop(limit, percent)}: the test set cannot tell a pass "
                         "from a fail (decide_on: upper_bound asks for the worst end)")
    return notes
