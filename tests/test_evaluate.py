"""evaluate_tflite against an independent per-image loop, on real models and a real interpreter."""

from __future__ import annotations

import fcntl
import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from quantflow.core.spec import EvaluationSpec
from quantflow.domain.evaluate import dequantize, evaluate_tflite, load_test_split, quantize
from quantflow.variants import ConvertInputs, converter
from quantflow.variants.int8 import Int8Variant

CFG = EvaluationSpec(threads=1, warmup_runs=2, timed_runs=20, batch_size=8)


def _tiny_model_helpers() -> Any:
    """tests/variants/conftest.py builds the tiny model; it is loaded by path because a conftest
    is not importable as a module and tests/conftest.py belongs to the whole suite."""
    path = Path(__file__).parent / "variants" / "conftest.py"
    spec = importlib.util.spec_from_file_location("tiny_model_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    inputs: ConvertInputs = _tiny_model_helpers().shared_inputs(tmp_path_factory)
    from quantflow.variants._common import keras_converter, load_model

    root = tmp_path_factory.mktemp("evaluate")
    float_tflite = root / "float.tflite"
    float_tflite.write_bytes(keras_converter(load_model(inputs), root / "sm").convert())
    variant = Int8Variant(name="i8", kind="int8", io_type="int8")
    int8 = converter("int8")(inputs, variant, root / "int8.tflite")
    return {"inputs": inputs, "float": float_tflite, "int8": int8, "variant": variant}


def per_image_accuracy(tflite: Path, x: np.ndarray, y: np.ndarray) -> float:
    """The obvious loop, one image at a time, with the quantization arithmetic written out."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    correct = 0
    for image, label in zip(x, y, strict=True):
        sample = image[None]
        if inp["dtype"] == np.int8:
            scale, zero = inp["quantization"]
            sample = np.clip(np.round(sample / scale) + zero, -128, 127).astype(np.int8)
        interpreter.set_tensor(inp["index"], sample)
        interpreter.invoke()
        logits = interpreter.get_tensor(out["index"]).astype(np.float32)
        if out["dtype"] == np.int8:
            logits = (logits - out["quantization"][1]) * out["quantization"][0]
        correct += int(np.argmax(logits) == label)
    return correct / len(y)


def few_examples(dataset: Path, tmp_path: Path, n: int = 21) -> Path:
    """A test split of n examples: with batch size 8 the last batch is partial (5)."""
    with np.load(dataset) as npz:
        small = tmp_path / "small.npz"
        np.savez(small, x_test=npz["x_test"][:n], y_test=npz["y_test"][:n], num_classes=10)
    return small


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["float", "int8"])
def test_batched_accuracy_equals_per_image_loop(models: dict, tmp_path: Path, kind: str) -> None:
    small = few_examples(models["inputs"].dataset, tmp_path)
    x, y, _ = load_test_split(small)
    variant = models["variant"] if kind == "int8" else None
    metrics = evaluate_tflite(models[kind], small, CFG, name=kind, kind=kind, variant=variant)
    assert metrics.status == "ok", metrics.error
    assert metrics.test_examples == 21 and metrics.num_classes == 10
    assert metrics.accuracy == per_image_accuracy(models[kind], x, y)


@pytest.mark.slow
def test_int8_io_path_scores_close_to_float(models: dict) -> None:
    dataset = models["inputs"].dataset
    base = evaluate_tflite(models["float"], dataset, CFG, name="float", kind="float")
    m = evaluate_tflite(
        models["int8"],
        dataset,
        CFG,
        name="i8",
        kind="int8",
        variant=models["variant"],
        baseline=base,
    )
    assert base.accuracy > 0.5 and abs(m.accuracy - base.accuracy) <= 0.05
    assert m.tensors.input_dtype == "int8" and m.tensors.input_quantization is not None
    assert base.tensors.input_quantization is None
    assert m.compression_ratio == pytest.approx(base.size_bytes / m.size_bytes)
    assert m.accuracy_drop == pytest.approx(base.accuracy - m.accuracy)
    assert m.relative_drop == pytest.approx(m.accuracy_drop / base.accuracy)


@pytest.mark.slow
def test_latency_is_recorded_and_waits_for_the_lock(models: dict, tmp_path: Path) -> None:
    lock, result = tmp_path / "latency.lock", {}

    def run() -> None:
        result["m"] = evaluate_tflite(
            models["float"],
            models["inputs"].dataset,
            CFG,
            name="float",
            kind="float",
            latency_lock=lock,
        )

    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        worker = threading.Thread(target=run)
        worker.start()
        worker.join(timeout=1.0)
        assert worker.is_alive(), "latency was measured while another process held the lock"
    worker.join(timeout=30)
    latency = result["m"].latency
    assert 0 < latency.p50_ms <= latency.p95_ms
    assert latency.mean_ms > 0
    assert (latency.threads, latency.warmup_runs, latency.timed_runs) == (1, 2, 20)


@pytest.mark.slow
def test_broken_promise_fails_the_variant_but_keeps_metrics(models: dict) -> None:
    m = evaluate_tflite(models["float"], models["inputs"].dataset, CFG, name="f", kind="float16")
    assert m.status == "failed" and "float16" in m.error
    assert m.accuracy is not None and m.size_bytes is not None


def test_quantize_rounds_clips_and_dequantize_inverts() -> None:
    detail = {"dtype": np.int8, "quantization": (0.5, -3)}
    q = quantize(np.array([0.0, 1.2, 1000.0, -1000.0], np.float32), detail)
    assert q.dtype == np.int8 and q.tolist() == [-3, -1, 127, -128]
    assert dequantize(q[:2], detail).tolist() == [0.0, 1.0]
    as_float = {"dtype": np.float32, "quantization": (0.0, 0)}
    assert quantize(np.ones(2), as_float).dtype == np.float32


def test_num_classes_is_read_or_inferred(tmp_path: Path) -> None:
    x = np.zeros((3, 2), np.float32)
    np.savez(tmp_path / "a.npz", x_test=x, y_test=[0, 1, 1], y_train=[4], num_classes=12)
    np.savez(tmp_path / "b.npz", x_test=x, y_test=[0, 1, 1], y_train=[4])
    assert load_test_split(tmp_path / "a.npz")[2] == 12
    assert load_test_split(tmp_path / "b.npz")[2] == 5
