"""A regression model and a binary sigmoid classifier end to end, step by step (real training,
conversion and LiteRT evaluation), each with a gate that passes and one that fails; the
binary one also scores a custom metric callable from the workspace."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from quantflow.core.request import load_request
from quantflow.steps import export, gate, prepare, quantize, train
from tests.tiny import tiny_spec, write_workspace

pytestmark = pytest.mark.integration
VARIANTS = [{"name": "dr", "kind": "dynamic_range"}, {"name": "f16", "kind": "float16"}]


def run_all(ws: Path, overrides: list[str] | None = None) -> dict:
    ctx = load_request(ws, "pipelines.yaml", overrides or [], "tiny").step
    for step in (prepare, train, export):
        step.run(ctx)
    for v in VARIANTS:
        assert quantize.run(ctx, v["name"]).status == "ok"
    return regate(ws, overrides or [])


def regate(ws: Path, overrides: list[str]) -> dict:
    result = gate.run(load_request(ws, "pipelines.yaml", overrides, "tiny").step)
    return {d.name: d for d in result.decisions}


def test_regression_mae_and_rmse_gates_pass_and_fail(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 20)).astype(np.float32)
    y = (x @ rng.normal(size=20) * 0.5 + 0.1 * rng.normal(size=600)).astype(np.float32)
    ws = tmp_path / "ws"
    ws.mkdir()
    np.savez(ws / "reg.npz", x=x, y=y)
    write_workspace(ws, tiny_spec(
        dataset={"source": "npz", "path": "reg.npz", "train_size": 400, "test_size": 200,
                 "normalize": "none"},
        model={"arch": "mlp", "hidden": [64]}, variants=VARIANTS,
        train={"epochs": 60, "batch_size": 32, "learning_rate": 0.01, "seed": 0},
        evaluation={"task": "regression", "warmup_runs": 1, "timed_runs": 5},
        gate={"max_metric": 1.0, "max_metric_drop": 0.1, "min_sqnr_db": 10}))
    decided = run_all(ws)
    assert all(d.passed for d in decided.values()), {k: d.reason for k, d in decided.items()}
    m = json.loads((ws / "artifacts/tiny/metrics.json").read_text())
    assert m["float"]["mae"] < 1.0 and "accuracy" not in m["float"]
    assert {"mae_drop", "mae_drop_low", "mae_drop_high", "output_rmse", "sqnr_db"} <= set(m["dr"])
    assert "agreement_pct" not in m["dr"]
    report = (ws / "artifacts/tiny/report.md").read_text()
    assert "metric: mae, lower is better" in report
    failed = regate(ws, ["gate.max_metric=0.0001"])
    assert not failed["dr"].passed and "mae" in failed["dr"].reason
    decided = run_all(ws, ["evaluation.metric=rmse", "gate.max_metric=2.0"])
    assert all(d.passed for d in decided.values())
    failed = regate(ws, ["evaluation.metric=rmse", "gate.max_metric=0.0001"])
    assert not failed["f16"].passed and "rmse" in failed["f16"].reason
    csv = (ws / "artifacts/tiny/variants.csv").read_text().splitlines()
    assert csv[0].split(",")[2] == "rmse"


def sigmoid_model(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    """The user's own binary model: one sigmoid output, trained here, never by quantflow."""
    from quantflow.core.tfenv import tf_modules

    _, keras = tf_modules()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.InputLayer(input_shape=(x.shape[1],)),
                              keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(x, y, epochs=30, verbose=0)
    model.save(path)


def test_binary_sigmoid_accuracy_auc_and_a_custom_metric(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 600)
    x = (rng.normal(size=(600, 20)) + 0.3 * y[:, None]).astype(np.float32)
    ws = tmp_path / "ws"
    ws.mkdir()
    np.savez(ws / "bin.npz", x=x, y=y)
    sigmoid_model(ws / "clf.keras", x[:400], y[:400])
    (ws / "my_metrics.py").write_text(
        "import numpy as np\n\n"
        "def balanced(y_true, y_pred):\n"
        "    p = np.asarray(y_pred) >= 0.5\n"
        "    return float(np.mean([np.mean(p[y_true == c] == c) for c in (0, 1)]))\n")
    write_workspace(ws, tiny_spec(
        dataset={"source": "npz", "path": "bin.npz", "train_size": 400, "test_size": 200,
                 "shuffle": False, "normalize": "none"},
        model={"path": "clf.keras"}, variants=VARIANTS,
        evaluation={"task": "binary", "warmup_runs": 1, "timed_runs": 5},
        gate={"min_accuracy": 0.65, "max_accuracy_drop": 0.05, "min_agreement": 90}))
    decided = run_all(ws)
    assert all(d.passed for d in decided.values()), {k: d.reason for k, d in decided.items()}
    m = json.loads((ws / "artifacts/tiny/metrics.json").read_text())
    assert m["float"]["accuracy"] > 0.65 and m["dr"]["agreement_pct"] >= 90
    failed = regate(ws, ["gate.min_accuracy=0.999"])
    assert not failed["dr"].passed
    decided = run_all(ws, ["evaluation.metric=auc", "gate.min_metric=0.7"])
    assert all(d.passed for d in decided.values())
    m = json.loads((ws / "artifacts/tiny/metrics.json").read_text())
    assert 0.7 < m["float"]["auc"] < 1 and "auc_drop" in m["dr"]
    failed = regate(ws, ["evaluation.metric=auc", "gate.min_metric=0.9999"])
    assert not failed["dr"].passed and "auc" in failed["dr"].reason
    custom = ["evaluation.metric=my_metrics:balanced", "evaluation.higher_is_better=true"]
    decided = run_all(ws, custom)
    assert all(d.passed for d in decided.values())
    m = json.loads((ws / "artifacts/tiny/metrics.json").read_text())
    assert 0.6 < m["float"]["balanced"] < 1
