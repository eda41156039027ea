"""A float .tflite `path:` model through a real `quantflow run` (Prefect harness, warm workers,
LiteRT, the registry): an `engine: ai_edge_quantizer` kind and `auto` with uint8 I/O, the two
things no converter kind can do for a model that is already a .tflite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from quantflow.cli import app
from quantflow.domain.registry import list_versions
from tests.tiny import tiny_spec, write_workspace

pytestmark = pytest.mark.integration


FLOAT_TFLITE = """
import sys
import numpy as np
from sklearn.datasets import load_digits
from quantflow.core.tfenv import tf_modules

tf, keras = tf_modules()
keras.utils.set_random_seed(0)
digits = load_digits()
model = keras.Sequential([keras.layers.InputLayer(input_shape=(8, 8)), keras.layers.Flatten(),
                          keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])
model.compile(keras.optimizers.Adam(1e-2),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit((digits.images / 16.0).astype(np.float32), digits.target, epochs=5, verbose=0)
open(sys.argv[1], "wb").write(tf.lite.TFLiteConverter.from_keras_model(model).convert())
"""


def float_tflite(path: Path) -> Path:
    """A small MLP trained on the digits the pipeline prepares (8x8, / 16), as a .tflite.
    Made in a child process: TensorFlow imported in this one before the in-process CLI run
    left pytest's captured stderr closed under the Prefect harness (seen here, not explained)."""
    subprocess.run([sys.executable, "-c", FLOAT_TFLITE, str(path)], check=True,
                   capture_output=True, cwd=Path(__file__).resolve().parents[2])
    return path


def test_a_tflite_model_runs_aeq_kinds_and_auto(prefect_harness, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    float_tflite(ws / "m.tflite")
    spec = tiny_spec(model={"path": "m.tflite"}, gate={"max_accuracy_drop": 0.05},
                     variants=[{"name": "i8", "kind": "int8", "engine": "ai_edge_quantizer"},
                               {"name": "auto", "kind": "auto", "io_type": "uint8"}])
    result = CliRunner().invoke(app, ["run", "--spec", str(write_workspace(ws, spec))],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [version] = list_versions(ws / "registry" / "tiny")
    manifest = json.loads((ws / "registry" / "tiny" / version / "manifest.json").read_text())
    assert {f["variant"] for f in manifest["files"].values()} == {"i8", "auto"}
    assert manifest["metrics"]["i8"]["tensors"]["input_dtype"] == "int8"
    assert manifest["metrics"]["auto"]["tensors"]["input_dtype"] == "uint8"
    art = ws / "artifacts" / "tiny"
    assert not (art / "export" / "saved_model").exists()  # nothing was converted from one
    assert json.loads((art / "variants" / "auto" / "search.json").read_text())["passed"]
