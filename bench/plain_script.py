"""The seeds' MNIST experiment as one plain sequential script: what a user writes without quantflow.

It is the baseline of the benchmark (bench/run_bench.py), so it does exactly the work of the
`mnist` pipeline and nothing more clever: read the IDX files, train the CNN of TensorFlow's
quantization example for one epoch with Adam, convert to float, dynamic range, float16, int8 with
float fallback, int8-only and 16x8, fine-tune with QAT for one epoch and convert, then score every
model with a per-image interpreter loop (the loop of the TF example, on ai_edge_litert).

It deliberately does not import quantflow. Settings are those of pipelines.yaml `mnist`: first
8,000 images for training, last 2,000 for testing, pixels / 255, seed 0, batch 32, lr 1e-3,
200 calibration images drawn from the training split with numpy's default_rng(0).

    .venv/bin/python bench/plain_script.py [--data ../shared/data/mnist] [--json out.json]
"""

from __future__ import annotations

import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import struct  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PHASES: dict[str, float] = {}


def phase(name: str, since: float) -> float:
    """Record the seconds since ``since`` under ``name``; return now."""
    now = time.perf_counter()
    PHASES[name] = round(now - since, 3)
    return now


def read_idx(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    dims = raw[3]
    shape = struct.unpack(f">{dims}I", raw[4 : 4 + 4 * dims])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def split(images: np.ndarray, labels: np.ndarray, train_size: int, test_size: int):
    """The pipelines' split: the first ``train_size`` images train, the last ``test_size`` test,
    pixels / 255; 200 calibration images drawn from the training split with default_rng(0),
    fed one at a time as the converter's representative dataset."""
    x_train = images[:train_size].astype(np.float32) / 255.0
    x_test = images[len(images) - test_size :].astype(np.float32) / 255.0
    pick = np.sort(np.random.default_rng(0).choice(len(x_train), size=200, replace=False))
    calibration = x_train[pick]

    def representative_dataset():
        for i in range(len(calibration)):
            yield [calibration[i : i + 1]]

    return x_train, labels[:train_size], x_test, labels[len(labels) - test_size :], \
        representative_dataset


def build(keras):
    return keras.Sequential([
        keras.layers.InputLayer(input_shape=(28, 28)),
        keras.layers.Reshape(target_shape=(28, 28, 1)),
        keras.layers.Conv2D(filters=12, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ])


def compile_fit(model, keras, x, y, epochs, from_logits=True):
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, shuffle=True, verbose=0)
    return model


def evaluate(tflite: bytes, x: np.ndarray, y: np.ndarray, interpreter_cls) -> float:
    """One image at a time, like the TF example's evaluate_model()."""
    interpreter = interpreter_cls(model_content=tflite, num_threads=1)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    in_scale, in_zero = inp["quantization"]
    integer_in = np.issubdtype(inp["dtype"], np.integer)
    correct = 0
    for i in range(len(x)):
        image = x[i : i + 1]
        if integer_in:
            info = np.iinfo(inp["dtype"])
            image = np.clip(np.round(image / in_scale + in_zero), info.min, info.max)
        interpreter.set_tensor(inp["index"], image.astype(inp["dtype"]))
        interpreter.invoke()
        correct += int(np.argmax(interpreter.get_tensor(out["index"])[0]) == y[i])
    return correct / len(y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    ap.add_argument("--train-size", type=int, default=8000)
    ap.add_argument("--test-size", type=int, default=2000)
    ap.add_argument("--json", type=Path, help="Also write the results here.")
    args = ap.parse_args()

    t = time.perf_counter()
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras
    from ai_edge_litert.interpreter import Interpreter

    tf.get_logger().setLevel("ERROR")
    t = phase("import", t)

    images = read_idx(args.data / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(args.data / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    x_train, y_train, x_test, y_test, representative_dataset = split(
        images, labels, args.train_size, args.test_size)

    t = phase("data", t)

    keras.utils.set_random_seed(0)
    model = compile_fit(build(keras), keras, x_train, y_train, epochs=1)
    t = phase("train", t)

    def converter(m, optimize=True, calibrate=False):
        c = tf.lite.TFLiteConverter.from_keras_model(m)
        if optimize:
            c.optimizations = [tf.lite.Optimize.DEFAULT]
        if calibrate:
            c.representative_dataset = representative_dataset
        return c

    models: dict[str, bytes] = {}
    models["float"] = converter(model, optimize=False).convert()
    t = phase("convert_float", t)
    models["dynamic_range"] = converter(model).convert()
    t = phase("convert_dynamic_range", t)
    c = converter(model)
    c.target_spec.supported_types = [tf.float16]
    models["float16"] = c.convert()
    t = phase("convert_float16", t)
    models["int8_fallback"] = converter(model, calibrate=True).convert()
    t = phase("convert_int8_fallback", t)
    c = converter(model, calibrate=True)
    c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    c.inference_input_type = c.inference_output_type = tf.int8
    models["int8"] = c.convert()
    t = phase("convert_int8", t)
    c = converter(model, calibrate=True)
    c.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    models["int16x8"] = c.convert()
    t = phase("convert_int16x8", t)

    keras.utils.set_random_seed(0)
    qat = compile_fit(tfmot.quantization.keras.quantize_model(model), keras, x_train, y_train,
                      epochs=1)
    t = phase("qat_train", t)
    models["qat"] = converter(qat).convert()
    t = phase("convert_qat", t)

    results = {}
    for name, blob in models.items():
        results[name] = {"size_bytes": len(blob),
                         "accuracy": evaluate(blob, x_test, y_test, Interpreter)}
        t = phase(f"evaluate_{name}", t)

    wall = time.perf_counter() - T_START
    base = results["float"]["accuracy"]
    print(f"{'model':<15}{'bytes':>10}{'accuracy':>10}{'drop pp':>9}")
    for name, r in results.items():
        drop = 100 * (base - r["accuracy"])
        print(f"{name:<15}{r['size_bytes']:>10,}{r['accuracy']:>10.4f}{drop:>+9.2f}")
    print("phases (s): " + ", ".join(f"{k} {v:.2f}" for k, v in PHASES.items()))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"plain script: {wall:.2f} s wall, peak RSS {peak_mb:.0f} MB")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "wall_seconds": round(wall, 3), "peak_rss_mb": round(peak_mb, 1),
            "phases": PHASES, "models": results,
            "train_size": args.train_size, "test_size": args.test_size,
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
