"""The auto kind's search logic on a fake evaluator: no model, no TensorFlow."""

from __future__ import annotations

import numpy as np

from quantflow.variants._ranking import channel_loss
from quantflow.variants._search import Candidate, Outcome, Search

LAYERS = [f"l{i}" for i in range(10)]


def fake(needed: dict[str, str], calls: list[Candidate]):
    """Passes when every needed layer is at least at its needed precision; the drop falls
    with every needed layer that is."""
    level = {"int8": 0, "int16": 1, "float": 2}

    def evaluate(c: Candidate) -> Outcome:
        calls.append(c)
        ok = [level[c.get(s, "int8")] >= level[p] for s, p in needed.items()]
        size = 100 + sum(10 if p == "float" else 1 for p in c.values())
        return Outcome(all(ok), 0.1 * (len(ok) - sum(ok)), size, 1.0, "fake")
    return evaluate


def test_full_int8_passing_is_one_evaluation() -> None:
    calls: list[Candidate] = []
    s = Search(fake({}, calls), 24, 900)
    s.run(lambda: LAYERS, ["int8", "int16", "float"])
    assert calls == [{}] and s.best().candidate == {}


def test_finds_and_prunes_to_the_needed_layers() -> None:
    calls: list[Candidate] = []
    s = Search(fake({"l1": "int16", "l4": "int16"}, calls), 24, 900)
    s.run(lambda: LAYERS, ["int8", "int16", "float"])
    best = s.best()
    assert best.outcome.passed and best.candidate == {"l1": "int16", "l4": "int16"}
    assert len(calls) == len({tuple(sorted(c.items())) for c in calls}), "cached, no repeats"


def test_int16_useless_escalates_to_float() -> None:
    calls: list[Candidate] = []
    s = Search(fake({"l0": "float"}, calls), 24, 900)
    s.run(lambda: LAYERS, ["int8", "int16", "float"])
    assert s.best().candidate == {"l0": "float"}


def test_misleading_ranking_falls_back_to_greedy() -> None:
    calls: list[Candidate] = []
    s = Search(fake({"l2": "int16"}, calls), 24, 900)
    s.run(lambda: LAYERS, ["int8", "int16"])  # passes only with l2, found by bisect anyway
    assert s.best().candidate == {"l2": "int16"}
    calls.clear()
    # nothing passes at all: bisect fails, greedy runs until the budget ends
    s = Search(fake({"zz": "int16"}, calls), 6, 900)
    s.run(lambda: LAYERS, ["int8", "int16"])
    assert len(s.tried) == 6 and not s.best().outcome.passed
    assert any(t.stage == "greedy" for t in s.tried)


def test_budget_keeps_the_best_so_far() -> None:
    calls: list[Candidate] = []
    s = Search(fake({"l1": "int16", "l4": "int16"}, calls), 1, 900)
    s.run(lambda: LAYERS, ["int8", "int16", "float"])
    assert len(calls) == 1 and not s.best().outcome.passed


def test_outlier_channel_is_seen_per_channel() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (64, 8))
    assert channel_loss(x, 0.0, 1.0) < 1e-3
    x[:, 0] *= 1000
    assert channel_loss(x, 0.0, 1000.0) > 0.5
