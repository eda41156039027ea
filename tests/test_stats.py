"""The paired interval, fidelity and the new gate keys on samples whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from quantflow.core.results import Fidelity, Sanity
from quantflow.domain import stats
from quantflow.domain.gate import decide
from quantflow.metrics import metric
from tests.test_gate import BASELINE, by_name, make_spec, metrics


def test_paired_interval_of_an_accuracy_drop_matches_the_binomial_answer() -> None:
    """Float right on all 1,000, the variant wrong on 20 of them: the drop is 2 pp and,
    resampling pairs, Binomial(1000, 0.02)/1000, so the 95% interval is 2 +- 0.87 pp."""
    n, wrong = 1000, 20
    y = np.zeros(n, np.int64)
    base = np.tile([[1.0, 0.0]], (n, 1))
    out = base.copy()
    out[:wrong] = [0.0, 1.0]
    low, high = stats.paired_interval(metric("accuracy").compute, y, base, out, True, 2000)
    half = 1.96 * math.sqrt(0.02 * 0.98 / n)
    assert low == pytest.approx(0.02 - half, abs=0.002)
    assert high == pytest.approx(0.02 + half, abs=0.002)
    again = stats.paired_interval(metric("accuracy").compute, y, base, out, True, 2000)
    assert again == (low, high)  # fixed seed: a re-run records the same interval


def test_a_constant_error_shift_has_a_point_interval_and_lower_is_better_signs_right() -> None:
    y = np.linspace(0, 1, 50)
    low, high = stats.paired_interval(metric("mae").compute, y, y, y + 0.1, False, 200)
    assert low == pytest.approx(0.1) and high == pytest.approx(0.1)  # worse: positive
    assert stats.paired_interval(metric("mae").compute, y, y, y, False, 0) is None


def test_fidelity_agreement_rmse_and_sqnr() -> None:
    base = np.array([[3.0, 0.0], [0.0, 4.0]])
    out = np.array([[3.0, 0.0], [5.0, 4.0]])  # second prediction flips to class 0
    f = stats.fidelity("classification", base, out, base, out, 0.5)
    assert f.agreement_pct == 50.0
    assert f.output_rmse == pytest.approx(math.sqrt(25 / 4))
    assert f.sqnr_db == pytest.approx(10 * math.log10(25 / 25))
    same = stats.fidelity("regression", base, base, base, base, 0.5)
    assert same.agreement_pct is None and same.sqnr_db == stats.SQNR_IDENTICAL_DB


def test_upper_bound_turns_a_marginal_point_pass_into_a_fail() -> None:
    marginal = metrics("dr", accuracy=0.961, metric_value=0.961, metric_drop=0.009,
                       drop_low=0.003, drop_high=0.015)
    gate = {"max_metric_drop": 0.01}
    point = by_name(decide("p", make_spec(gate), BASELINE, [marginal]))["dr"]
    assert point.passed, point.reason
    upper = by_name(decide("p", make_spec({**gate, "decide_on": "upper_bound"}), BASELINE,
                           [marginal]))["dr"]
    assert not upper.passed
    assert "upper end of the 95% interval of accuracy drop 1.50 pp > max 1.00 pp" in upper.reason


def test_notes_say_when_the_test_set_cannot_resolve_the_threshold() -> None:
    m = metrics("dr", accuracy=0.961, metric_value=0.961, metric_drop=0.009, drop_low=0.003,
                drop_high=0.015, test_examples=100)
    result = decide("p", make_spec({"max_metric_drop": 0.005}), BASELINE, [m])
    assert any("one test example is 1.00 pp" in n and "needs at least 200" in n
               for n in result.notes)
    m = m.model_copy(update={"test_examples": 1000})
    result = decide("p", make_spec({"max_metric_drop": 0.01}), BASELINE, [m])
    assert any("straddles the max 1.00 pp" in n for n in result.notes)


def test_fidelity_keys_and_regression_sanity_in_the_gate() -> None:
    fid = Fidelity(agreement_pct=97.0, output_rmse=0.1, sqnr_db=18.0)
    m = metrics("dr", fidelity=fid)
    d = by_name(decide("p", make_spec({"min_agreement": 98, "min_sqnr_db": 15}), BASELINE,
                       [m]))["dr"]
    assert not d.passed and "agreement_pct 97.00% < min 98.00%" in d.reason
    assert "sqnr_db" not in d.reason
    sanity = Sanity(measure="mse", value=0.95, trivial=1.0, trivial_name="the training mean",
                    higher_is_better=False)
    reg = metrics("dr", task="regression", metric="mae", higher_is_better=False, percent=False,
                  metric_value=0.8, accuracy=None, sanity=sanity)
    d = by_name(decide("p", make_spec(), BASELINE, [reg]))["dr"]
    assert not d.passed and "does not beat predicting the training mean" in d.reason
