"""One model's outputs on the test split -> every quality number the gate speaks in.

The primary metric comes from the spec (``evaluation.metric`` for ``evaluation.task``);
accuracy is recorded besides for every classifier (min_accuracy and the chance-level check
read it); with the float baseline's outputs given, the drop, its paired 95% interval and the
fidelity to the float model are recorded too. Nothing here touches the interpreter: the
outputs come from ``evaluate.predict_all``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from quantflow import metrics
from quantflow.core.spec import EvaluationSpec
from quantflow.domain import stats


def is_logits(task: str, raw: np.ndarray) -> bool | None:
    """A binary model's single output is a probability when it stays in [0, 1] (a sigmoid
    can leave it nowhere else) and a logit otherwise; decided once, on the float model."""
    if task != "binary":
        return None
    return bool(raw.size and (float(raw.min()) < 0 or float(raw.max()) > 1))


def score(cfg: EvaluationSpec, y: np.ndarray, y_train: np.ndarray, raw: np.ndarray,
          baseline: Any = None, base_raw: np.ndarray | None = None,
          workspace: Path | None = None) -> dict[str, Any]:
    """The VariantMetrics fields of one model's quality (see the module docstring)."""
    metric = cfg.primary(workspace)
    logits = baseline.logits if baseline is not None and baseline.logits is not None \
        else is_logits(cfg.task, raw)
    out = metrics.prepare(cfg.task, raw, y, bool(logits))
    fn = metric.bound(cfg.threshold)
    value = float(fn(y, out))
    fields: dict[str, Any] = {
        "task": cfg.task, "metric": metric.name, "higher_is_better": metric.higher_is_better,
        "percent": metric.percent, "metric_value": value, "logits": logits,
        "sanity": stats.sanity(cfg.task, y, out, y_train, cfg.threshold),
        "accuracy": None if cfg.task == "regression"
        else metrics.metric("accuracy").bound(cfg.threshold)(y, out),
    }
    if base_raw is None:
        return fields
    base_out = metrics.prepare(cfg.task, base_raw, y, bool(logits))
    fields["fidelity"] = stats.fidelity(cfg.task, base_raw, raw, base_out, out, cfg.threshold)
    interval = stats.paired_interval(fn, y, base_out, out, metric.higher_is_better,
                                     cfg.bootstrap_samples)
    if interval is not None:
        fields["drop_low"], fields["drop_high"] = interval
    return fields
