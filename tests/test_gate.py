"""The gate turns metrics + thresholds into typed decisions; hand-built metrics, no TensorFlow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from quantflow.core.results import GateResult, Latency, VariantMetrics
from quantflow.core.spec import PipelineSpec
from quantflow.domain.gate import decide

ALL_THRESHOLDS = {
    "min_accuracy": 0.9,
    "max_accuracy_drop": 0.02,
    "max_relative_drop": 0.05,
    "max_size_bytes": 2000,
    "min_compression_ratio": 2.0,
    "max_latency_ms": 5.0,
}


def make_spec(
    gate: dict[str, Any] | None = None,
    publish: dict[str, Any] | None = None,
    variants: list[dict[str, Any]] | None = None,
) -> PipelineSpec:
    variants = variants or [
        {"name": "dr", "kind": "dynamic_range"},
        {"name": "f16", "kind": "float16"},
        {"name": "i8", "kind": "int8"},
    ]
    return PipelineSpec.model_validate(
        {
            "dataset": {"source": "sklearn_digits"},
            "model": {"arch": "mlp"},
            "variants": variants,
            "gate": gate or {},
            "publish": publish or {},
        }
    )


def metrics(
    name: str,
    accuracy: float = 0.96,
    size: int = 1000,
    p50: float = 1.0,
    kind: str = "int8",
    **kw: Any,
) -> VariantMetrics:
    latency = Latency(
        p50_ms=p50, p95_ms=p50 * 1.5, mean_ms=p50, threads=1, warmup_runs=1, timed_runs=10
    )
    fields: dict[str, Any] = {"num_classes": 10, "test_examples": 360}
    fields.update(kw)
    return VariantMetrics(
        name=name, kind=kind, accuracy=accuracy, size_bytes=size, latency=latency, **fields
    )


BASELINE = metrics("float", accuracy=0.97, size=4000, kind="float")


def three(**per_name: dict[str, Any]) -> list[VariantMetrics]:
    return [metrics(n, **per_name.get(n, {})) for n in ("dr", "f16", "i8")]


def by_name(result: GateResult) -> dict[str, Any]:
    return {d.name: d for d in result.decisions}


def test_all_thresholds_pass_and_every_check_is_recorded() -> None:
    result = decide("p", make_spec(ALL_THRESHOLDS), BASELINE, three())
    d = by_name(result)["i8"]
    assert d.passed and result.passed == ["dr", "f16", "i8"]
    checks = {c.metric: c for c in d.checks}
    assert list(checks) == [
        "accuracy_over_chance",
        "accuracy",
        "accuracy_drop",
        "relative_drop",
        "size_bytes",
        "compression_ratio",
        "latency_p50_ms",
    ]
    assert checks["accuracy_drop"].value == pytest.approx(0.01)
    assert checks["relative_drop"].value == pytest.approx(0.01 / 0.97)
    assert checks["compression_ratio"].value == pytest.approx(4.0)
    assert checks["latency_p50_ms"].threshold == 5.0
    assert all(c.passed and c.reason for c in d.checks)


def test_only_set_thresholds_are_checked_but_sanity_always_is() -> None:
    d = by_name(decide("p", make_spec(), BASELINE, three()))["dr"]
    assert [c.metric for c in d.checks] == ["accuracy_over_chance"]
    assert d.passed


@pytest.mark.parametrize(
    ("metric", "variant_fields", "fragment"),
    [
        ("accuracy", {"accuracy": 0.85}, "accuracy 0.8500 < min 0.9000"),
        ("accuracy_drop", {"accuracy": 0.94}, "accuracy drop 3.00 pp > max 2.00 pp"),
        ("size_bytes", {"size": 2500}, "size_bytes 2,500 bytes > max 2,000 bytes"),
        ("latency_p50_ms", {"p50": 7.5}, "latency_p50_ms 7.500 ms > max 5.000 ms"),
    ],
)
def test_each_threshold_fails_with_value_threshold_and_reason(
    metric: str, variant_fields: dict[str, Any], fragment: str
) -> None:
    d = by_name(decide("p", make_spec(ALL_THRESHOLDS), BASELINE, three(i8=variant_fields)))["i8"]
    failed = [c for c in d.checks if not c.passed]
    assert not d.passed
    assert metric in [c.metric for c in failed]
    assert fragment in d.reason


def test_relative_drop_and_compression_ratio_fail() -> None:
    gate = {"max_relative_drop": 0.01, "min_compression_ratio": 5.0}
    d = by_name(decide("p", make_spec(gate), BASELINE, three(i8={"accuracy": 0.95})))["i8"]
    failed = {c.metric: c for c in d.checks if not c.passed}
    assert set(failed) == {"relative_drop", "compression_ratio"}
    assert failed["compression_ratio"].value == pytest.approx(4.0)
    assert failed["compression_ratio"].threshold == 5.0


def test_threshold_met_exactly_passes_despite_float_rounding() -> None:
    # 0.97 - 0.96 == 0.010000000000000009 in binary floating point
    d = by_name(decide("p", make_spec({"max_accuracy_drop": 0.01}), BASELINE, three()))["dr"]
    assert d.passed


def test_unmeasured_value_fails_its_check() -> None:
    variants = three()
    variants[2] = variants[2].model_copy(update={"latency": None})
    d = by_name(decide("p", make_spec({"max_latency_ms": 5.0}), BASELINE, variants))["i8"]
    assert not d.passed and "latency_p50_ms was not measured" in d.reason


def test_variant_override_wins_key_by_key() -> None:
    variants = [
        {"name": "dr", "kind": "dynamic_range"},
        {"name": "f16", "kind": "float16", "gate": {"min_accuracy": 0.99}},
        {"name": "i8", "kind": "int8", "gate": {"max_size_bytes": 5000}},
    ]
    spec = make_spec({"min_accuracy": 0.9, "max_size_bytes": 1500}, variants=variants)
    result = decide("p", spec, BASELINE, three(i8={"size": 3000}))
    d = by_name(result)
    assert d["dr"].passed
    assert not d["f16"].passed and "min 0.9900" in d["f16"].reason
    assert d["i8"].passed  # its own size limit applies, the pipeline's min_accuracy still does
    assert {c.metric: c.threshold for c in d["i8"].checks}["accuracy"] == 0.9


def test_failed_variant_fails_with_its_error() -> None:
    variants = three()
    variants[1] = VariantMetrics(
        name="f16", kind="float16", status="failed", error="ConverterError: op FOO not supported"
    )
    result = decide("p", make_spec(), BASELINE, variants)
    d = by_name(result)["f16"]
    assert not d.passed and d.checks == []
    assert "float16 failed: ConverterError: op FOO not supported" in d.reason
    assert result.selected == ["dr", "i8"]


@pytest.mark.parametrize("margin", [0.0, 0.1])
@pytest.mark.parametrize("test_examples", [360, 10000])
def test_chance_level_accuracy_never_passes(margin: float, test_examples: int) -> None:
    spec = make_spec({"min_accuracy": 0.0, "min_margin_over_chance": margin})
    variants = three(i8={"accuracy": 0.1006, "test_examples": test_examples})
    d = by_name(decide("p", spec, BASELINE, variants))["i8"]
    assert not d.passed
    assert "accuracy 0.1006 is at chance level (0.10) - broken model or evaluation" in d.reason


def test_sanity_uses_baseline_classes_and_fails_without_any() -> None:
    no_classes = {"num_classes": None, "accuracy": 0.95}
    d = by_name(decide("p", make_spec(), BASELINE, three(i8=no_classes)))["i8"]
    assert d.passed  # the baseline says 10 classes
    base = BASELINE.model_copy(update={"num_classes": None})
    d = by_name(decide("p", make_spec(), base, three(i8=no_classes)))["i8"]
    assert not d.passed and "num_classes was not recorded" in d.reason


def test_margin_above_chance_names_the_shortfall() -> None:
    spec = make_spec({"min_margin_over_chance": 0.5})
    d = by_name(decide("p", spec, BASELINE, three(i8={"accuracy": 0.4})))["i8"]
    assert not d.passed and "only 0.3000 above chance level (0.10)" in d.reason


def test_failed_baseline_fails_everything() -> None:
    base = VariantMetrics(name="float", kind="float", status="failed", error="interpreter crash")
    result = decide("p", make_spec(), base, three())
    assert result.selected == [] and result.passed == []
    assert all("float baseline failed: interpreter crash" in d.reason for d in result.decisions)


def test_baseline_at_chance_fails_everything() -> None:
    base = metrics("float", accuracy=0.1006, size=4000, kind="float")
    result = decide("p", make_spec(), base, three())
    assert result.selected == []
    reason = result.decisions[0].reason
    assert reason.startswith("float baseline accuracy 0.1006 is at chance level (0.10)")


def test_missing_metrics_fail_and_unknown_metrics_are_an_error() -> None:
    result = decide("p", make_spec(), BASELINE, three()[:2])
    assert by_name(result)["i8"].reason == "no metrics were recorded"
    with pytest.raises(ValueError, match="not in pipeline 'p': zz"):
        decide("p", make_spec(), BASELINE, [*three(), metrics("zz")])


@pytest.mark.parametrize(
    ("objective", "expected"),
    [("smallest_size", "f16"), ("highest_accuracy", "i8"), ("lowest_latency", "dr")],
)
def test_best_picks_one_by_objective(objective: str, expected: str) -> None:
    variants = three(
        dr={"size": 900, "accuracy": 0.95, "p50": 0.5},
        f16={"size": 800, "accuracy": 0.955, "p50": 0.9},
        i8={"size": 850, "accuracy": 0.965, "p50": 0.7},
    )
    spec = make_spec(publish={"strategy": "best", "objective": objective})
    assert decide("p", spec, BASELINE, variants).selected == [expected]


def test_best_ignores_failing_variants_and_breaks_ties_by_name() -> None:
    variants = three(dr={"size": 500}, f16={"size": 700}, i8={"size": 500})
    variants[0] = variants[0].model_copy(update={"accuracy": 0.5})  # smallest, but fails
    spec = make_spec({"min_accuracy": 0.9}, publish={"strategy": "best"})
    assert decide("p", spec, BASELINE, variants).selected == ["i8"]
    variants = three(dr={"size": 500}, f16={"size": 700}, i8={"size": 500})
    assert decide("p", spec, BASELINE, variants).selected == ["dr"]


def test_all_passing_selects_every_passing_variant_in_spec_order() -> None:
    spec = make_spec({"min_accuracy": 0.9})
    result = decide("p", spec, BASELINE, three(f16={"accuracy": 0.5}))
    assert result.selected == ["dr", "i8"]
    assert (
        decide(
            "p",
            spec,
            BASELINE,
            three(dr={"accuracy": 0.5}, f16={"accuracy": 0.5}, i8={"accuracy": 0.5}),
        ).selected
        == []
    )


def test_gate_result_round_trips_as_json(tmp_path: Path) -> None:
    result = decide("p", make_spec(ALL_THRESHOLDS), BASELINE, three(i8={"accuracy": 0.1006}))
    assert GateResult.read(result.write(tmp_path / "gate.json")) == result
