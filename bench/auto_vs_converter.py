"""The TFLite converter against ai-edge-quantizer, kind by kind, and auto's search, in one run
on two workloads: the seed CNN (the `mnist` pipeline of pipelines.yaml, the seeds' experiment)
and a MobileNetV2 (alpha 0.35, 32x32x3, 10 classes) trained one epoch on the same MNIST images
padded to 32x32 and tiled to three channels (../shared/data/mnist, read in place).

    cd "$(mktemp -d)" && python /path/to/bench/auto_vs_converter.py [--quick] [--epochs N]

It writes pipelines.yaml, the MobileNetV2 files, artifacts/ and results.json in the current
folder. Every variant is quantized by the quantize step itself (steps called in this one
process, one at a time), so "convert" is the step's own conversion time: the converter run, or
AEQ's calibration + quantization; "step" adds the evaluation (test split and latency).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "mnist"
KINDS = [("dynamic_range", {}), ("float16", {}), ("int8_float_fallback", {}),
         ("int8", {"io_type": "int8"}), ("int16x8", {})]
TRAIN = 8000  # MobileNetV2 training images, whatever the mode
ENGINES = {"conv": "converter", "aeq": "ai_edge_quantizer"}


def variants(quick: bool) -> list[dict[str, Any]]:
    """Each kind once per engine, then auto with the issue's 0.5 pp gate."""
    out = [{"name": f"{kind}-{tag}", "kind": kind, "engine": engine, **options}
           for kind, options in KINDS for tag, engine in ENGINES.items()]
    return out + [{"name": "auto", "kind": "auto", "max_evaluations": 8 if quick else 24,
                   "timeout_seconds": 300 if quick else 900,
                   "gate": {"max_accuracy_drop": 0.005}}]


def mnist_32x32x3() -> tuple[Any, Any]:
    """The 10,000 MNIST test images, padded to 32x32 and tiled to 3 channels (uint8)."""
    import numpy as np

    from quantflow.domain.data import _read_idx

    x = _read_idx(MNIST / "t10k-images-idx3-ubyte.gz", 2051, 3)
    y = _read_idx(MNIST / "t10k-labels-idx1-ubyte.gz", 2049, 1).astype(np.int64)
    x = np.repeat(np.pad(x, ((0, 0), (2, 2), (2, 2)))[..., None], 3, axis=-1)
    return x, y


def mobilenet_files(epochs: int) -> float:
    """Train the MobileNetV2 on the first 8,000 images (the `mnist` pipeline's train split;
    the test split, the last 2,000 or 500, is never seen) and write mobilenet.keras and
    mnist32.npz here; return the training seconds."""
    import numpy as np

    from quantflow.core.tfenv import tf_modules

    x, y = mnist_32x32x3()
    np.savez("mnist32.npz", x=x, y=y)
    _, keras = tf_modules()
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(alpha=0.35, input_shape=(32, 32, 3), weights=None,
                                           classes=10)
    for layer in model.layers:  # Keras' 0.999 leaves the moving statistics at their initial
        if isinstance(layer, keras.layers.BatchNormalization):  # values after one short epoch
            layer.momentum = 0.9  # (a chance-level float model, measured)
    # Adam 3e-3, batch 32, one epoch: 0.78 test accuracy measured (1e-3 / batch 64: 0.35)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    start = time.perf_counter()
    model.fit(x[:TRAIN] / np.float32(255), y[:TRAIN], batch_size=32, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    model.save("mobilenet.keras")
    return seconds


def pipelines(quick: bool) -> dict[str, Any]:
    """The `mnist` pipeline as the repo ships it (data path absolute), and the same with the
    MobileNetV2 and its 32x32x3 data; both with every variant and no publishing."""
    seed = yaml.safe_load((ROOT / "pipelines.yaml").read_text())["pipelines"]["mnist"]
    seed["dataset"]["path"] = str(MNIST)
    if quick:
        seed["dataset"].update(train_size=2000, test_size=500)
    seed.pop("publish", None)
    seed["variants"] = variants(quick)
    mobile = yaml.safe_load(yaml.safe_dump(seed))
    mobile["description"] = "MobileNetV2 (alpha 0.35, 32x32x3) on MNIST padded and tiled."
    mobile["dataset"] = {"source": "npz", "path": "mnist32.npz", "shuffle": False,
                         "normalize": "max", **{k: seed["dataset"][k]
                                                for k in ("train_size", "test_size")}}
    mobile["model"] = {"path": "mobilenet.keras"}
    mobile["gate"] = {"max_accuracy_drop": 0.005}
    return {"seed_cnn": seed, "mobilenet_v2": mobile}


def run_pipeline(name: str) -> dict[str, Any]:
    """prepare, train, export, then every variant's quantize step, timed."""
    from quantflow.core.request import load_request
    from quantflow.steps import export, prepare, quantize, train

    ctx = load_request(Path("."), "pipelines.yaml", [], name).step
    start = time.perf_counter()
    prepare.run(ctx), train.run(ctx)
    baseline = export.run(ctx)
    out: dict[str, Any] = {"setup_seconds": round(time.perf_counter() - start, 1),
                           "float": {"size": baseline.size_bytes, "acc": baseline.accuracy}}
    for v in ctx.pipeline.variants:
        start = time.perf_counter()
        m = quantize.run(ctx, v.name)
        out[v.name] = {"status": m.status, "step": round(time.perf_counter() - start, 2),
                       "convert": m.convert_seconds, "size": m.size_bytes, "acc": m.accuracy,
                       "drop_pp": None if m.metric_drop is None else 100 * m.metric_drop,
                       "error": (m.error or "")[:200]}
        print(f"  {name} {v.name}: {out[v.name]}", flush=True)
    found = json.loads((ctx.paths.variant_dir("auto") / "search.json").read_text())
    out["auto"] |= {"evaluations": found["evaluations"], "wall": found["wall_seconds"],
                    "passed": found["passed"]}
    return out


def _cell(r: dict[str, Any]) -> str:
    if r["status"] != "ok" and r["size"] is None:
        return f"failed: {r['error'][:60]} | | |"
    acc = "" if r["acc"] is None else f"{r['acc']:.4f}"
    return f"{r['convert']:.2f} s | {r['size']:,} | {acc}{'' if r['status'] == 'ok' else ' !'}"


def table(name: str, r: dict[str, Any]) -> list[str]:
    """One workload: the kinds side by side, then auto's search."""
    lines = [f"## {name} (float: {r['float']['size']:,} bytes, accuracy "
             f"{r['float']['acc']:.4f}; prepare+train+export {r['setup_seconds']} s)", "",
             "| kind | converter: convert | size (bytes) | accuracy | ai-edge-quantizer: "
             "convert | size (bytes) | accuracy | speed-up |", "|---|" + "---:|" * 7]
    for kind, _ in KINDS:
        c, a = r[f"{kind}-conv"], r[f"{kind}-aeq"]
        ratio = f"{c['convert'] / a['convert']:.2g}x" if c["convert"] and a["convert"] else ""
        lines.append(f"| {kind} | {_cell(c)} | {_cell(a)} | {ratio} |")
    auto = r["auto"]
    got = (f"{auto['size']:,} bytes, accuracy {auto['acc']:.4f}, drop {auto['drop_pp']:.2f} pp"
           if auto["status"] == "ok" else auto["error"])
    lines += ["", f"auto (gate max_accuracy_drop 0.005): {auto['evaluations']} evaluations, "
              f"search wall {auto['wall']} s (step {auto['step']} s); {got}", ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="pipeline splits of 2,000/500 "
                        "images (the MobileNetV2 still trains on 8,000), 8 evaluations")
    parser.add_argument("--epochs", type=int, default=1, help="MobileNetV2 training epochs")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    specs = pipelines(args.quick)
    Path("pipelines.yaml").write_text(yaml.safe_dump({"pipelines": specs}, sort_keys=False))
    trained = mobilenet_files(args.epochs)
    print(f"MobileNetV2 trained in {trained:.1f} s", flush=True)
    results = {name: run_pipeline(name) for name in specs}
    results["mobilenet_v2"]["train_seconds"] = round(trained, 1)
    Path("results.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(line for name, r in results.items() for line in table(name, r)))


if __name__ == "__main__":
    main()
