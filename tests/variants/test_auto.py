"""The auto kind end to end (steps called directly): a model that full int8 breaks because one
outlier channel sets a tensor's per-tensor scale, fixed by moving the two layers around it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from quantflow.core import io
from quantflow.core.request import load_request
from quantflow.core.results import GateResult, VariantMetrics
from tests.tiny import tiny_spec, write_workspace

pytestmark = pytest.mark.slow
CHANNELS = 8


def outlier_model(path: Path, factor: float) -> Path:
    """Conv features, then a fixed 1x1 conv scaling channel 0 by ``factor`` and one scaling it
    back: the float function is unchanged, but int8 activations of the scaled tensor crush
    the other channels. Trained on the digits the pipeline prepares (a 8x8 / 16 image)."""
    import keras
    from sklearn.datasets import load_digits

    from quantflow.core.tfenv import tf_modules

    tf_modules()
    keras.utils.set_random_seed(0)
    up = np.eye(CHANNELS, dtype=np.float32)
    up[0, 0] = factor
    model = keras.Sequential([
        keras.Input((8, 8)), keras.layers.Reshape((8, 8, 1)),
        keras.layers.Conv2D(CHANNELS, 3, activation="relu", name="features"),
        keras.layers.Conv2D(CHANNELS, 1, use_bias=False, name="scale_up", trainable=False),
        keras.layers.Conv2D(CHANNELS, 1, use_bias=False, name="scale_down", trainable=False),
        keras.layers.Flatten(), keras.layers.Dense(10, name="logits")])
    model.get_layer("scale_up").set_weights([up.reshape(1, 1, CHANNELS, CHANNELS)])
    model.get_layer("scale_down").set_weights([np.linalg.inv(up).reshape(1, 1, CHANNELS,
                                                                         CHANNELS)])
    digits = load_digits()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.
                  SparseCategoricalCrossentropy(from_logits=True))
    model.fit((digits.images / 16.0).astype(np.float32), digits.target, epochs=5, verbose=0)
    model.save(path)
    return path


def run(tmp_path: Path, factor: float, auto: dict) -> tuple[object, VariantMetrics]:
    from quantflow.steps import export, gate, prepare, quantize, train

    outlier_model(tmp_path / "m.keras", factor)
    spec = tiny_spec(model={"path": "m.keras"},
                     variants=[{"name": "auto", "kind": "auto", **auto}],
                     gate={"max_accuracy_drop": 0.01})
    ctx = load_request(write_workspace(tmp_path, spec).parent, "pipelines.yaml", [],
                       "tiny").step
    prepare.run(ctx)
    train.run(ctx)
    export.run(ctx)
    metrics = quantize.run(ctx, "auto")
    gate.run(ctx)
    return ctx, metrics


def search_of(ctx) -> dict:
    return json.loads((ctx.paths.variant_dir("auto") / "search.json").read_text())


def test_auto_moves_the_two_layers_around_the_outlier(tmp_path: Path) -> None:
    ctx, m = run(tmp_path, 1000.0, {})
    assert m.status == "ok", m.error
    found = search_of(ctx)
    full, chosen = found["full_int8"], found["candidates"][found["selected"]]
    assert not full["passed"] and chosen["passed"] and found["passed"]
    moved = sorted(chosen["precisions"])
    assert len(moved) <= 3 and any("scale_up" in n for n in moved) \
        and any("scale_down" in n for n in moved), moved
    assert chosen["size_bytes"] <= 1.1 * full["size_bytes"]
    # search.json describes the published model
    model = ctx.paths.variant_tflite("auto")
    assert chosen["sha256"] == io.sha256_file(model)
    assert chosen["metric_value"] == m.metric_value and chosen["size_bytes"] == m.size_bytes
    assert found["evaluations"] == len(found["candidates"]) <= 24
    rows = (ctx.paths.variant_dir("auto") / "layers.csv").read_text().splitlines()
    assert rows[0].startswith("layer,error,precision")
    assert {r.split(",")[0].removesuffix("_1") for r in rows[1:3]} == {"scale_up", "scale_down"}
    assert GateResult.read(ctx.paths.gate).selected == ["auto"]
    report = ctx.paths.report.read_text()
    assert "## auto: layers kept above int8" in report and "scale_up" in report


def test_full_int8_passing_takes_one_evaluation(tmp_path: Path) -> None:
    ctx, m = run(tmp_path, 1.0, {"gate": {"max_accuracy_drop": 0.03}})
    assert m.status == "ok", m.error
    found = search_of(ctx)
    assert found["evaluations"] == 1 and found["candidates"][0]["precisions"] == {}
    assert not (ctx.paths.variant_dir("auto") / "layers.csv").read_text().count("int16")


def test_a_budget_too_small_fails_with_the_best_candidate_unpublished(tmp_path: Path) -> None:
    from quantflow.steps import publish

    ctx, m = run(tmp_path, 1000.0, {"max_evaluations": 1})
    assert m.status == "failed" and "best candidate: drop" in m.error
    assert "with 0 layers in float after 1 evaluations" in m.error
    folder = ctx.paths.variant_dir("auto")
    assert not (folder / "model.tflite").exists() and (folder / "best_candidate.tflite").exists()
    assert GateResult.read(ctx.paths.gate).selected == []
    assert publish.run(ctx).status == "blocked"


def test_uint8_io_keeps_the_search_and_gives_a_uint8_interface(tmp_path: Path) -> None:
    """The same search, each candidate given uint8 I/O (the int8 model requantized at its
    ends); the published model has it, and the promise that checks it holds."""
    from tests.variants.test_kinds import io_dtypes

    ctx, m = run(tmp_path, 1000.0, {"io_type": "uint8"})
    assert m.status == "ok", m.error
    assert io_dtypes(ctx.paths.variant_tflite("auto")) == ("uint8", "uint8")
    found = search_of(ctx)
    assert found["io_type"] == "uint8" and found["passed"]
    assert not found["full_int8"]["passed"] and m.tensors.input_dtype == "uint8"
