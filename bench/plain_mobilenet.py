"""The realistic workload (issue #14) as one plain sequential script, the seeds' notebook
procedure on a MobileNetV2: the baseline quantflow's `mobilenet` benchmark pipeline is timed
against.

One process: read the IDX files and pad/tile them to 32x32x3 (bench/_mnist32.py, the same
pixels quantflow reads from its .npz), build `tf_keras.applications.MobileNetV2(alpha=0.35,
weights=None)`, train it, convert with `from_keras_model` to float and each variant one after
the other, fine-tune with QAT and convert, then score every model one image at a time with
`ai_edge_litert` (the TF example's loop). Settings mirror the benchmark's pipeline: first N
images train, last M test, pixels / 255, seed 0, Adam, batch 32, 200 calibration images
drawn with numpy's default_rng(0).

    python bench/plain_mobilenet.py [--train-size 8000 --test-size 2000] [--epochs 1]
        [--variants dynamic_range,...,qat] [--json out.json]
"""

from __future__ import annotations

import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
from pathlib import Path  # noqa: E402

from _mnist32 import ALPHA, BN_MOMENTUM, mnist32  # noqa: E402
from plain_script import PHASES, compile_fit, evaluate, phase, split  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("dynamic_range", "float16", "int8_fallback", "int8", "int8_uint8", "int16x8", "qat")


def convert_all(tf, model, names: list[str], representative_dataset) -> dict[str, bytes]:
    """Float, then each post-training variant asked for, one converter call each."""
    def converter(optimize=True, calibrate=False, ops=None, io=None):
        c = tf.lite.TFLiteConverter.from_keras_model(model)
        if optimize:
            c.optimizations = [tf.lite.Optimize.DEFAULT]
        if calibrate:
            c.representative_dataset = representative_dataset
        if ops:
            c.target_spec.supported_ops = [ops]
        if io:
            c.inference_input_type = c.inference_output_type = io
        return c

    int8 = tf.lite.OpsSet.TFLITE_BUILTINS_INT8
    recipes = {
        "float": lambda: converter(optimize=False),
        "dynamic_range": lambda: converter(),
        "float16": lambda: converter(),
        "int8_fallback": lambda: converter(calibrate=True),
        "int8": lambda: converter(calibrate=True, ops=int8, io=tf.int8),
        "int8_uint8": lambda: converter(calibrate=True, ops=int8, io=tf.uint8),
        "int16x8": lambda: converter(calibrate=True, ops=tf.lite.OpsSet.
                                     EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8),
    }
    models, t = {}, time.perf_counter()
    for name in ["float", *(n for n in names if n in recipes)]:
        c = recipes[name]()
        if name == "float16":
            c.target_spec.supported_types = [tf.float16]
        models[name] = c.convert()
        t = phase(f"convert_{name}", t)
    return models


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    ap.add_argument("--train-size", type=int, default=8000)
    ap.add_argument("--test-size", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--json", type=Path, help="Also write the results here.")
    args = ap.parse_args()
    names = [n for n in args.variants.split(",") if n]

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

    images, labels = mnist32(args.data)
    x_train, y_train, x_test, y_test, representative_dataset = split(
        images, labels, args.train_size, args.test_size)

    t = phase("data", t)

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(alpha=ALPHA, input_shape=(32, 32, 3), weights=None,
                                           classes=10)
    for layer in model.layers:  # as the benchmark's builder does (bench/_mnist32.py)
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    model = compile_fit(model, keras, x_train, y_train, args.epochs, from_logits=False)
    t = phase("train", t)
    models = convert_all(tf, model, names, representative_dataset)
    t = time.perf_counter()
    if "qat" in names:
        keras.utils.set_random_seed(0)
        qat = compile_fit(tfmot.quantization.keras.quantize_model(model), keras, x_train,
                          y_train, 1, from_logits=False)
        t = phase("qat_train", t)
        c = tf.lite.TFLiteConverter.from_keras_model(qat)
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        models["qat"] = c.convert()
        t = phase("convert_qat", t)

    results = {}
    for name, blob in models.items():
        results[name] = {"size_bytes": len(blob),
                         "accuracy": evaluate(blob, x_test, y_test, Interpreter)}
        t = phase(f"evaluate_{name}", t)
    report(results, args, time.perf_counter() - T_START)


def report(results: dict[str, dict], args: argparse.Namespace, wall: float) -> None:
    base = results["float"]["accuracy"]
    print(f"{'model':<15}{'bytes':>10}{'accuracy':>10}{'drop pp':>9}")
    for name, r in results.items():
        drop = 100 * (base - r["accuracy"])
        print(f"{name:<15}{r['size_bytes']:>10,}{r['accuracy']:>10.4f}{drop:>+9.2f}")
    print("phases (s): " + ", ".join(f"{k} {v:.2f}" for k, v in PHASES.items()))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"plain script (MobileNetV2): {wall:.2f} s wall, peak RSS {peak_mb:.0f} MB")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "wall_seconds": round(wall, 3), "peak_rss_mb": round(peak_mb, 1),
            "phases": PHASES, "models": results, "train_size": args.train_size,
            "test_size": args.test_size, "epochs": args.epochs,
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
