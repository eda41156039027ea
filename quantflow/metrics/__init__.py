"""Quality metrics: one module per metric, and the module is all there is to a metric.

``quantflow/metrics/<name>.py`` says ``HIGHER_IS_BETTER``, ``TASKS`` (the tasks it applies
to), optionally ``PERCENT`` (a fraction shown in % with drops in pp) and
``compute(y_true, outputs[, threshold]) -> float`` on the whole test split's float outputs as
:func:`prepare` shapes them. The registry is built from the modules found in this package, so
adding a metric is adding a file. A spec may also name a user's callable,
``"package.module:function"``, imported from the workspace (:func:`resolve`).
"""

from __future__ import annotations

import importlib
import inspect
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

import numpy as np

from quantflow.core.plugins import discover, require

DEFAULT = "accuracy"
TASK_DEFAULTS = {"classification": "accuracy", "binary": "accuracy", "regression": "mae"}


@dataclass(frozen=True)
class Metric:
    """One metric: its name (a module's name or the user's reference), its direction, and
    whether it is a fraction shown in percent."""

    name: str
    higher_is_better: bool
    tasks: frozenset[str]
    compute: Callable[..., float]
    percent: bool = False

    def bound(self, threshold: float) -> Callable[[np.ndarray, np.ndarray], float]:
        """compute() with the binary threshold filled in where the metric takes one."""
        if "threshold" in inspect.signature(self.compute).parameters:
            return partial(self.compute, threshold=threshold)
        return self.compute


@cache
def metrics() -> dict[str, Metric]:
    """Every metric of this package, by name."""
    found = {}
    for module in discover(__name__):
        require(module, "HIGHER_IS_BETTER", "TASKS", "compute")
        name = module.__name__.rpartition(".")[2]
        found[name] = Metric(name, bool(module.HIGHER_IS_BETTER), frozenset(module.TASKS),
                             module.compute, bool(getattr(module, "PERCENT", False)))
    return found


def metric(name: str = DEFAULT) -> Metric:
    try:
        return metrics()[name]
    except KeyError:
        raise KeyError(f"no metric {name!r}; known: {', '.join(metrics())}") from None


def for_task(task: str) -> list[str]:
    """The built-in metric names that apply to ``task``, its default first."""
    names = [n for n, m in metrics().items() if task in m.tasks]
    return sorted(names, key=lambda n: n != TASK_DEFAULTS[task])


def resolve(name: str | None, task: str, higher_is_better: bool | None = None,
            workspace: Path | None = None) -> Metric:
    """The metric a spec names for ``task``: a built-in one, or a user's callable, imported
    from the workspace and probed once so a broken one fails at validate, not after a run."""
    name = name or TASK_DEFAULTS[task]
    if ":" not in name:
        known = metrics().get(name)
        if known is None or task not in known.tasks:
            why = ("no such metric" if known is None
                   else f"it applies to {', '.join(sorted(known.tasks))}")
            raise ValueError(f"metric {name!r} does not fit task {task!r} ({why}); "
                             f"allowed: {', '.join(for_task(task))} or 'package.module:function'")
        if higher_is_better is not None and higher_is_better != known.higher_is_better:
            raise ValueError(f"higher_is_better applies to a custom metric; {name} is "
                             f"{'higher' if known.higher_is_better else 'lower'} is better")
        return known
    if higher_is_better is None:
        raise ValueError(f"custom metric {name!r} needs higher_is_better: true or false")
    fn = _import(name, workspace or Path("."))
    _probe(name, fn, task)
    return Metric(name, higher_is_better, frozenset({task}), fn)


def _import(ref: str, workspace: Path) -> Callable[..., float]:
    """``package.module:function`` with the workspace first on the import path."""
    module_name, _, attr = ref.partition(":")
    root = str(Path(workspace).resolve())
    added = root not in sys.path
    if added:
        sys.path.insert(0, root)
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except Exception as exc:  # ImportError, AttributeError, or the module's own error
        raise ValueError(f"custom metric {ref!r} does not import: {type(exc).__name__}: "
                         f"{exc}") from None
    finally:
        if added:
            sys.path.remove(root)
    if not callable(fn):
        raise ValueError(f"custom metric {ref!r} is not callable")
    return fn  # type: ignore[no-any-return]


_PROBES = {
    "classification": (np.array([0, 1, 1, 0]), np.array([[2., 0.], [0., 1.], [1., 0.], [3., 1.]])),
    "binary": (np.array([0, 1, 1, 0]), np.array([0.2, 0.9, 0.4, 0.1])),
    "regression": (np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.5, 1.0, 1.5, 3.5])),
}


def _probe(ref: str, fn: Callable[..., float], task: str) -> None:
    """Call the user's metric on four made-up examples: it must return one real number."""
    y, out = _PROBES[task]
    try:
        value = fn(y, out)
    except Exception as exc:
        raise ValueError(f"custom metric {ref!r} raised on a 4-example probe: "
                         f"{type(exc).__name__}: {exc}") from None
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or \
            not math.isfinite(float(value)):
        raise ValueError(f"custom metric {ref!r} must return a finite number, returned "
                         f"{type(value).__name__} {value!r:.60}")


def prepare(task: str, outputs: np.ndarray, y_true: np.ndarray, logits: bool) -> np.ndarray:
    """The outputs as metrics take them: classification as the model gives them; binary as
    the probability of class 1 (sigmoid of logits); regression in the targets' shape."""
    if task == "binary":
        p = outputs.reshape(len(outputs), -1)[:, -1].astype(np.float64)
        return 1.0 / (1.0 + np.exp(-p)) if logits else p
    if task == "regression":
        if outputs.size != y_true.size:
            raise ValueError(f"the model outputs {outputs.shape[1:]} per example but the "
                             f"targets are {y_true.shape[1:]}")
        return outputs.reshape(y_true.shape)
    return outputs
