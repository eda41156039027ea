"""A user's metric callable from the workspace: used when it works, refused at validate (with
file:line:col) when it does not return a number."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from quantflow.cli import app
from quantflow.core.errors import Exit
from quantflow.metrics import resolve

SPEC = """pipelines:
  tiny:
    dataset: {source: sklearn_digits, train_size: 600, test_size: 200}
    model: {arch: mlp}
    evaluation:
      task: regression
      higher_is_better: false
      metric: "ws_metrics.scores:%s"
    variants:
      - {name: dr, kind: dynamic_range}
"""


def workspace(tmp_path: Path, fn: str) -> Path:
    pkg = tmp_path / "ws_metrics"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "scores.py").write_text(
        "import numpy as np\n\n"
        "def max_error(y_true, y_pred):\n    return float(np.max(np.abs(y_true - y_pred)))\n\n"
        "def words(y_true, y_pred):\n    return 'high'\n")
    spec = tmp_path / "pipelines.yaml"
    spec.write_text(SPEC % fn)
    return spec


def test_a_workspace_callable_is_a_metric_with_its_declared_direction(tmp_path: Path) -> None:
    spec = workspace(tmp_path, "max_error")
    result = CliRunner().invoke(app, ["validate", str(spec)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    m = resolve("ws_metrics.scores:max_error", "regression", False, tmp_path)
    assert not m.higher_is_better and not m.percent
    assert m.compute(np.array([0.0, 1.0]), np.array([0.5, 3.0])) == 2.0


def test_a_callable_returning_a_non_number_fails_validate_at_its_line(tmp_path: Path) -> None:
    spec = workspace(tmp_path, "words")
    result = CliRunner().invoke(app, ["validate", str(spec)], catch_exceptions=False)
    assert result.exit_code == Exit.SPEC
    assert (f"{spec}:8:7: pipelines.tiny.evaluation.metric: custom metric "
            "'ws_metrics.scores:words' must return a finite number, returned str") in result.stderr
