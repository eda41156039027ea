"""Several inputs, integer token ids, fixed batch sizes and stateful models (issue #11), on real
tf_keras models, real conversions and LiteRT; the steps are called directly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from quantflow.core import io
from quantflow.core.request import load_request
from quantflow.core.spec import EvaluationSpec
from tests.tiny import tiny_spec, write_workspace

CFG = EvaluationSpec(warmup_runs=1, timed_runs=3, batch_size=16)


def test_single_input_files_keep_their_keys_and_several_are_stored_by_name(tmp_path):
    x, y = np.arange(12, dtype=np.float32).reshape(6, 2), np.arange(6) % 2
    io.save_dataset(tmp_path / "one.npz", io.PreparedData(x, y, x, y, 2))
    with np.load(tmp_path / "one.npz") as npz:
        assert npz.files == ["x_train", "y_train", "x_test", "y_test", "num_classes"]
    tokens = np.arange(18, dtype=np.int32).reshape(6, 3)
    two = {"image": x, "tokens": tokens}
    io.save_dataset(tmp_path / "two.npz", io.PreparedData(two, y, two, y, 2))
    back = io.load_dataset(tmp_path / "two.npz").x_test
    assert set(back) == {"image", "tokens"} and back["tokens"].dtype == np.int32
    io.save_calibration(tmp_path / "c.npz", two)
    assert io.load_calibration(tmp_path / "c.npz")["tokens"].dtype == np.int32
    first = (tmp_path / "two.npz").read_bytes()
    io.save_dataset(tmp_path / "two.npz", io.PreparedData(two, y, two, y, 2))
    assert (tmp_path / "two.npz").read_bytes() == first


def _workspace(root: Path, model, arrays: dict, dataset: dict, variants: list[dict],
               evaluation: dict | None = None, gate: dict | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    model.save(root / "model.keras")
    np.savez(root / "d.npz", **arrays)
    spec = tiny_spec(dataset={"source": "npz", "path": "d.npz", "train_size": 0.7,
                              "test_size": 0.3, **dataset},
                     model={"path": "model.keras"}, variants=variants,
                     calibration={"samples": 20}, gate=gate or {},
                     evaluation={"warmup_runs": 1, "timed_runs": 3, "batch_size": 16,
                                 **(evaluation or {})})
    return write_workspace(root, spec).parent


def _run(ws: Path, variants: list[str]) -> dict:
    from quantflow.steps import export, prepare, quantize, train

    ctx = load_request(ws, "pipelines.yaml", [], "tiny").step
    prepare.run(ctx)
    train.run(ctx)
    return {"float": export.run(ctx)} | {v: quantize.run(ctx, v) for v in variants}


@pytest.mark.slow
def test_image_plus_features_with_two_outputs(tmp_path):
    from quantflow.core.tfenv import tf_modules

    _, keras = tf_modules()
    rng = np.random.default_rng(0)
    img = rng.random((300, 4, 4, 1), dtype=np.float32)
    num = rng.random((300, 3), dtype=np.float32)
    y = (img[:, 0, 0, 0] + num[:, 0] > 1).astype(np.int64)  # needs both inputs
    a, b = keras.Input((4, 4, 1), name="image"), keras.Input((3,), name="features")
    h = keras.layers.Concatenate()([keras.layers.Flatten()(a), b])
    h = keras.layers.Dense(64, activation="relu")(h)  # >1024 weights: dynamic range quantizes it
    model = keras.Model([a, b], [keras.layers.Dense(2, name="pred")(h),
                                 keras.layers.Dense(1, name="aux")(h)])
    model.compile("adam", [keras.losses.SparseCategoricalCrossentropy(from_logits=True), "mse"])
    keras.utils.set_random_seed(0)
    model.fit({"image": img, "features": num}, [y, y.astype(np.float32)], epochs=60, verbose=0)
    kinds = ["dynamic_range", "int8_float_fallback", "int8"]
    ws = _workspace(tmp_path, model, {"x_img": img, "x_num": num, "y": y},
                    {"x_key": {"image": "x_img", "features": "x_num"}, "normalize": "none"},
                    [{"name": k, "kind": k} for k in kinds], {"output": "pred"})
    results = _run(ws, kinds)
    from quantflow.domain.evaluate import predict_all

    paths = load_request(ws, "pipelines.yaml", [], "tiny").step.paths
    x_test = io.load_dataset(paths.dataset).x_test
    np.testing.assert_allclose(predict_all(paths.float_tflite, x_test, CFG.model_copy(
        update={"output": "pred"})), model.predict(x_test, verbose=0)[0], atol=1e-4)
    for name, m in results.items():
        assert m.status == "ok", (name, m.error)
        assert m.accuracy > 0.8, (name, m.accuracy)
    assert abs(results["int8"].accuracy - results["float"].accuracy) < 0.1


@pytest.mark.slow
def test_token_ids_embedding_gru_at_batch_1(tmp_path):
    from quantflow.core.tfenv import tf_modules

    _, keras = tf_modules()
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 40, (240, 6)).astype(np.int64)
    y = (tokens[:, 0] < 20).astype(np.int64)
    t = keras.Input((6,), batch_size=1, dtype="int32", name="tokens")
    h = keras.layers.GRU(32)(keras.layers.Embedding(40, 32)(t))  # >1024 weights
    model = keras.Model(t, keras.layers.Dense(2)(h))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    keras.utils.set_random_seed(0)
    model.fit(tokens, y, epochs=15, batch_size=1, verbose=0)
    kinds = ["dynamic_range", "float16"]
    refused = ["int8", "int8_float_fallback"]  # calibrating a GRU's loop segfaults in TF 2.21
    ws = _workspace(tmp_path, model, {"x": tokens, "y": y}, {"normalize": "none"},
                    [{"name": k, "kind": k} for k in kinds + refused])
    results = _run(ws, kinds + refused)
    for name in refused:  # refused before the converter runs: the process survives to say so
        m = results[name]
        assert m.status == "failed" and f"kind {name} is not available for this model: it " \
            "has an RNN loop" in m.error and "use dynamic_range or float16" in m.error, m.error
    paths = load_request(ws, "pipelines.yaml", [], "tiny").step.paths
    assert io.load_dataset(paths.dataset).x_test.dtype == np.int64  # never normalised
    assert io.load_calibration(paths.calibration).dtype == np.int64
    for name in ("float", "dynamic_range", "float16"):
        m = results[name]
        assert m.status == "ok", (name, m.error)
        assert m.accuracy > 0.8 and m.tensors.input_dtype == "int32", (name, m.accuracy)


def _tflite(model, tmp_path: Path, name: str) -> Path:
    from quantflow.core.tfenv import tf_modules
    from quantflow.domain import savedmodel

    tf, _ = tf_modules()
    tf.saved_model.save(model, str(tmp_path / name))
    out = tmp_path / f"{name}.tflite"
    out.write_bytes(savedmodel.convert(savedmodel.converter(tmp_path / name)))
    return out


def _fresh_per_sample(tflite: Path, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    rows = []
    for i in range(len(x)):
        interp = Interpreter(model_path=str(tflite))
        interp.allocate_tensors()
        interp.set_tensor(interp.get_input_details()[0]["index"], x[i : i + 1])
        interp.invoke()
        rows.append(interp.get_tensor(interp.get_output_details()[0]["index"]))
    return np.concatenate(rows)


@pytest.mark.slow
@pytest.mark.parametrize("stateful", [False, True])  # fused LSTM state / resource variables
def test_state_is_reset_between_test_samples(tmp_path, stateful):
    from quantflow.core.tfenv import tf_modules
    from quantflow.domain import evaluate, feed

    _, keras = tf_modules()
    keras.utils.set_random_seed(0)
    t = keras.Input((5, 1), batch_size=1, name="seq")
    h = keras.layers.LSTM(4, stateful=stateful)(t)
    model = keras.Model(t, keras.layers.Dense(2)(h))
    tflite = _tflite(model, tmp_path, "lstm")
    assert feed.state_kind(tflite.read_bytes()) == ("resources" if stateful else "variables")
    x = np.random.default_rng(0).random((12, 5, 1), dtype=np.float32)
    got = evaluate.predict_all(tflite, x, CFG)
    np.testing.assert_allclose(got, _fresh_per_sample(tflite, x), rtol=1e-5, atol=1e-6)
    runner = feed.Runner(tflite, 1)  # without resets the state leaks into the next sample
    carried = []
    for i in range(len(x)):
        runner.interpreter.set_tensor(runner.inputs["seq"]["index"], x[i : i + 1])
        runner.interpreter.invoke()
        carried.append(runner.interpreter.get_tensor(runner.output["index"]))
    assert not np.allclose(np.concatenate(carried), got, atol=1e-6)


@pytest.mark.slow
def test_a_dynamic_batch_rnn_says_how_to_fix_it(tmp_path):
    from quantflow.core.errors import ModelError
    from quantflow.core.tfenv import tf_modules

    _, keras = tf_modules()
    t = keras.Input((6,), dtype="int32", name="tokens")
    model = keras.Model(t, keras.layers.Dense(2)(keras.layers.GRU(4)(
        keras.layers.Embedding(20, 4)(t))))
    with pytest.raises(ModelError, match=r"needs a static batch size: build its Input with "
                                         r"batch_size=1 \(or set `unroll=True`"):
        _tflite(model, tmp_path, "gru")


@pytest.mark.slow
@pytest.mark.parametrize("task", ["binary", "regression"])
def test_two_inputs_compose_with_a_binary_or_regression_task(tmp_path, task):
    """Issue #11 meets #12: inputs by name, a sigmoid or regression head, the task's metric,
    drop interval and fidelity, the gate and the deep check, on one two-input model."""
    from quantflow.core.tfenv import tf_modules
    from quantflow.domain.inspect import inspect_pipeline
    from quantflow.steps import gate

    _, keras = tf_modules()
    rng = np.random.default_rng(2)
    img, num = rng.random((300, 4, 4), dtype=np.float32), rng.random((300, 3), dtype=np.float32)
    signal = img[:, 0, 0] + num[:, 0]
    y = (signal > 1).astype(np.int64) if task == "binary" else signal.astype(np.float32)
    a, b = keras.Input((4, 4), name="image"), keras.Input((3,), name="features")
    h = keras.layers.Dense(64, activation="relu")(
        keras.layers.Concatenate()([keras.layers.Flatten()(a), b]))
    head = keras.layers.Dense(1, activation="sigmoid" if task == "binary" else None)
    model = keras.Model([a, b], head(h))
    model.compile("adam", "binary_crossentropy" if task == "binary" else "mse")
    keras.utils.set_random_seed(0)
    model.fit({"image": img, "features": num}, y, epochs=40, verbose=0)
    kinds = ["dynamic_range", "int8"]
    gate_spec = ({"min_accuracy": 0.8, "max_metric_drop": 0.1} if task == "binary"
                 else {"max_metric": 0.2, "max_metric_drop": 0.1, "min_sqnr_db": 10})
    ws = _workspace(tmp_path, model, {"x_img": img, "x_num": num, "y": y},
                    {"x_key": {"image": "x_img", "features": "x_num"}, "normalize": "none"},
                    [{"name": k, "kind": k} for k in kinds], {"task": task}, gate_spec)
    ctx = load_request(ws, "pipelines.yaml", [], "tiny").step
    assert inspect_pipeline(ctx).problems == []
    results = _run(ws, kinds)
    for name, m in results.items():
        assert m.status == "ok" and m.task == task, (name, m.error)
        assert m.metric == ("accuracy" if task == "binary" else "mae")
    for name in kinds:
        m = results[name]
        assert m.drop_low is not None and m.drop_low <= m.metric_drop <= m.drop_high, name
        assert m.fidelity is not None and m.fidelity.sqnr_db > 10, (name, m.fidelity)
    decided = {d.name: d for d in gate.run(ctx).decisions}
    assert all(d.passed for d in decided.values()), {k: d.reason for k, d in decided.items()}
