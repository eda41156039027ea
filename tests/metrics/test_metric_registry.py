"""The metric modules are the registry; accuracy is the default and computes top-1 exactly."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

from quantflow.metrics import DEFAULT, metric, metrics

ROOT = Path(__file__).resolve().parents[2]


def test_every_module_of_the_package_is_a_metric() -> None:
    modules = sorted(p.stem for p in (ROOT / "quantflow" / "metrics").glob("[!_]*.py"))
    assert sorted(metrics()) == modules
    for m in metrics().values():
        assert isinstance(m.higher_is_better, bool) and m.tasks
        assert list(inspect.signature(m.compute).parameters)[:2] == ["y_true", "outputs"]
        assert m.tasks <= {"classification", "binary", "regression"}


def test_accuracy_is_the_default_and_is_top_1() -> None:
    acc = metric()
    assert acc is metric(DEFAULT) and acc.name == "accuracy"
    assert acc.higher_is_better and acc.tasks == {"classification", "binary"}
    outputs = np.array([[0.1, 0.9], [2.0, -1.0], [0.0, 3.0]], np.float32)
    assert acc.compute(np.array([1, 1, 1]), outputs) == 2 / 3


def test_unknown_metric_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="no metric 'f1'; known: accuracy, auc"):
        metric("f1")
