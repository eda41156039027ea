"""How a metric's numbers are named and printed, in one place for every output.

A metric that is a fraction (accuracy) is shown in % and its drops in percentage points
(pp); any other metric in its own units. A drop is positive when the variant is worse, in
metrics.json, the CLI table, report.md, the Prefect artifact, variants.csv and the log alike.
"""

from __future__ import annotations


def label(metric: str) -> str:
    """The metric's short name: a custom ``package.module:function`` is its function."""
    return metric.rpartition(":")[2]


def drop_key(metric: str, percent: bool) -> str:
    """The key/column of a metric's drop: ``accuracy_drop_pp``, ``mae_drop``."""
    return f"{label(metric)}_drop{'_pp' if percent else ''}"


def scaled(value: float | None, percent: bool) -> float | None:
    """A value in the unit it is shown in (x100 for a fraction)."""
    return None if value is None else (100 * value if percent else value)


def show_value(value: float | None, percent: bool) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.2f}%" if percent else f"{value:.4g}"


def show_drop(drop: float | None, percent: bool, low: float | None = None,
              high: float | None = None) -> str:
    """``0.20 pp [-0.15, 0.55]``: the drop and its 95% interval, when one was recorded."""
    if drop is None:
        return "-"
    if percent:
        text, unit = f"{100 * drop:.2f} pp", (lambda v: f"{100 * v:.2f}")
    else:
        text, unit = f"{drop:.4g}", (lambda v: f"{v:.4g}")
    if low is not None and high is not None:
        text += f" [{unit(low)}, {unit(high)}]"
    return text
