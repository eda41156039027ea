"""Quality metrics: one module per metric, and the module is all there is to a metric.

``quantflow/metrics/<name>.py`` says ``HIGHER_IS_BETTER``, ``TASKS`` (the tasks it applies
to, e.g. "classification") and ``compute(y_true, outputs) -> float``, where ``outputs`` are
the model's float outputs (dequantized) for the whole test split. The registry below is built
from the modules found in this package, so adding a metric is adding a file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

from quantflow.core.plugins import discover, require

DEFAULT = "accuracy"  # what the gate's accuracy thresholds and the reports mean today


@dataclass(frozen=True)
class Metric:
    """One discovered metric: its name (= its module's name) and what it needs to be used."""

    name: str
    higher_is_better: bool
    tasks: frozenset[str]
    compute: Callable[[np.ndarray, np.ndarray], float]


@cache
def metrics() -> dict[str, Metric]:
    """Every metric of this package, by name."""
    found = {}
    for module in discover(__name__):
        require(module, "HIGHER_IS_BETTER", "TASKS", "compute")
        name = module.__name__.rpartition(".")[2]
        found[name] = Metric(name, bool(module.HIGHER_IS_BETTER), frozenset(module.TASKS),
                             module.compute)
    return found


def metric(name: str = DEFAULT) -> Metric:
    try:
        return metrics()[name]
    except KeyError:
        raise KeyError(f"no metric {name!r}; known: {', '.join(metrics())}") from None
