"""Where QAT's conversion time goes (issue #14), and whether faster ways to convert the same
fine-tuned model give the same .tflite.

Builds the benchmark's MobileNetV2 (bench/_mnist32.py BUILDER_SOURCE), wraps it with tfmot's
quantize_model, fine-tunes a few batches (conversion time does not depend on the weights), then
converts it with each method asked for, timing the converter's phases (its internal functions
are wrapped with timers), the threads the process runs and its CPU time per wall second.
Every method's bytes are compared with from_keras_model's; where they differ, tensor by tensor
and by the outputs on the test images.

    PYTHONPATH=$PWD nice .venv/bin/python bench/probe/qat_convert.py \
        [--data /work/shared/data/mnist] [--io float32,int8] [--methods keras,no_traces,...]
        [--profile /tmp/qat-prof] [--batches 4] [--repeat 1]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BENCH))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

PHASES: dict[str, float] = defaultdict(float)


def _wrap(owner, name: str, label: str) -> None:
    """Replace owner.name by a timer that adds its wall time to PHASES[label]."""
    fn = getattr(owner, name)

    def timed(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            PHASES[label] += time.perf_counter() - t

    setattr(owner, name, timed)


def instrument() -> None:
    """Timers around the converter's phases (tensorflow/lite/python/lite.py)."""
    from tensorflow.lite.python import lite
    from tensorflow.python.framework import convert_to_constants

    base, v2 = lite.TFLiteConverterBase, lite.TFLiteConverterBaseV2
    for owner, name, label in [
        (lite._save, "save", "1 SavedModel save of the Keras model (tf.saved_model.save)"),
        (lite, "_parse_saved_model_with_debug_info", "2 parse saved_model.pb"),
        (v2, "_load_saved_model", "3 load_graph (TF1 import of the meta graph)"),
        (lite, "_load", "4 tf.saved_model.load (restore, for debug info)"),
        (v2, "_validate_inputs", "5 validate inputs (quant mode scan, debug info)"),
        (lite.TFLiteKerasModelConverterV2, "_freeze_keras_model", "f freeze keras model"),
        (lite.TFLiteFrozenGraphConverterV2, "_freeze_concrete_function", "f freeze concrete fn"),
        (convert_to_constants, "convert_variables_to_constants_v2_as_graph", "f  (of it) freezing"),
        (v2, "_optimize_tf_model", "g grappler"),
        (lite, "_convert_graphdef", "6 MLIR conversion (convert_graphdef)"),
        (lite, "_convert_saved_model", "6 MLIR conversion (convert_saved_model)"),
        (base, "_quantize", "7 calibration + MLIR quantize (_quantize)"),
        (lite, "_modify_model_io_type", "8 modify I/O type"),
        (lite, "_deduplicate_readonly_buffers", "9 deduplicate buffers"),
        (lite, "_populate_conversion_metadata", "a conversion metadata"),
    ]:
        _wrap(owner, name, label)


@contextmanager
def watch():
    """Yields a dict filled on exit: wall, CPU (all threads), max threads seen."""
    out: dict[str, float] = {}
    stop, peak = threading.Event(), [0]

    def sample() -> None:
        while not stop.wait(0.02):
            peak[0] = max(peak[0], threads())

    out["threads_before"] = threads()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    try:
        yield out
    finally:
        stop.set()
        sampler.join()
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        out["wall"] = time.perf_counter() - t0
        out["cpu"] = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        out["threads"] = peak[0] - 1  # the sampler itself


def threads() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def build_qat(tf, keras, x, y, batches: int):
    """The benchmark's MobileNetV2, trained one batch, quantize_model, fine-tuned ``batches``."""
    import tensorflow_model_optimization as tfmot
    from _mnist32 import BUILDER_SOURCE

    ns: dict = {}
    exec(BUILDER_SOURCE, ns)  # noqa: S102 - the benchmark's own builder
    keras.utils.set_random_seed(0)
    model = ns["mobilenet_v2"]((32, 32, 3), 10)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    model.fit(x[:32], y[:32], batch_size=32, epochs=1, verbose=0)
    qat = tfmot.quantization.keras.quantize_model(model)
    qat.compile("adam", keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    qat.fit(x[: 32 * batches], y[: 32 * batches], batch_size=32, epochs=1, verbose=0)
    return qat


def signature_fn(tf, model, batch):
    """model(x, training=False) traced once over a fixed input signature."""
    spec = tf.TensorSpec([batch, *model.inputs[0].shape[1:]], model.inputs[0].dtype,
                         name=model.inputs[0].name.split(":")[0])
    return tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)


def keras_default_signature(model):
    """The serving signature Keras' SavedModel save gives a model (what from_keras_model's
    converter converts): same trace, same input and output names."""
    from tf_keras.src.saving.legacy import saving_utils

    return saving_utils.trace_model_call(model)


def _save_keras_traced(tf, model, out):  # model.save: traces every layer's call
    model.save(str(out), save_format="tf")


def _save_default_tf(tf, model, out):  # tf.saved_model.save, own signature (output_0)
    tf.saved_model.save(model, str(out), signatures=signature_fn(tf, model, None))


def _save_keras_untraced(tf, model, out):  # the Keras object graph, no per-layer traces
    with no_keras_traces():
        tf.saved_model.save(model, str(out), signatures=keras_default_signature(model),
                            options=tf.saved_model.SaveOptions(save_debug_info=True))


def _save_model_save_untraced(tf, model, out):  # the public model.save equivalent
    model.save(str(out), save_format="tf", include_optimizer=False, save_traces=False,
               signatures=keras_default_signature(model),
               options=tf.saved_model.SaveOptions(save_debug_info=True))


def _save_module(tf, model, out):  # the signature on a tf.Module holding only the variables
    root = tf.Module()
    root.model_variables = list(model.variables)
    tf.saved_model.save(root, str(out), signatures=keras_default_signature(model),
                        options=tf.saved_model.SaveOptions(save_debug_info=True))


# method: (how the SavedModel is written, whether the converter records KERAS_MODEL as the
# model type, as from_keras_model does, instead of TF_SAVED_MODEL)
SAVERS = {
    "keras_save": (_save_keras_traced, False),
    "saved_model": (_save_default_tf, False),
    "nt_sm": (_save_keras_untraced, False),
    "nt_sm_type": (_save_keras_untraced, True),
    "model_save_nt": (_save_model_save_untraced, True),
    "module_sm": (_save_module, True),
}


def saved_model_converter(out: Path, as_keras: bool):
    from tensorflow.lite.python import lite

    from quantflow.domain.savedmodel import converter

    if not as_keras:
        return converter(out)
    lite.TFLiteConverterBase._set_original_model_type(
        lite.conversion_metadata_fb.ModelType.KERAS_MODEL)
    return lite.TFLiteSavedModelConverterV2(str(out), {"serve"}, ["serving_default"])


def make_converter(method: str, tf, model, tmp: Path):
    """A TFLiteConverter of ``model`` for each method; returns (converter, seconds of setup
    outside the converter that must count, e.g. a SavedModel save)."""
    lite = tf.lite.TFLiteConverter
    t = time.perf_counter()
    if method == "keras":  # the baseline: what quantflow did before issue #14
        return lite.from_keras_model(model), 0.0
    if method == "quantflow":  # what quantflow's QAT does now (_common.keras_converter)
        from quantflow.variants._common import keras_converter
        c = keras_converter(model, tmp)
        return c, time.perf_counter() - t
    if method == "no_traces":  # from_keras_model under save_traces=False: fails (no signature)
        return NoTraces(model), 0.0
    if method.startswith("concrete"):  # concrete_none / concrete_1 / concrete_none_obj
        fn = signature_fn(tf, model, 1 if "_1" in method else None)
        return lite.from_concrete_functions([fn], model if method.endswith("_obj") else None), 0.0
    save, as_keras = SAVERS[method]
    save(tf, model, tmp / method)
    seconds = time.perf_counter() - t
    return saved_model_converter(tmp / method, as_keras), seconds


@contextmanager
def no_keras_traces():
    from tf_keras.src.saving.legacy.saved_model import utils

    with utils.keras_option_scope(save_traces=False, in_tf_saved_model_scope=True):
        yield


class NoTraces:
    """from_keras_model's converter whose convert() saves without Keras' per-layer traces."""

    def __init__(self, model):
        import tensorflow as tf

        self._c = tf.lite.TFLiteConverter.from_keras_model(model)

    def __getattr__(self, name):
        return getattr(self._c, name)

    def __setattr__(self, name, value):
        if name == "_c":
            object.__setattr__(self, name, value)
        else:
            setattr(self._c, name, value)

    def convert(self):
        with no_keras_traces():
            return self._c.convert()


def configure(tf, c, io_type: str, rep):
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    if io_type != "float32":
        c.representative_dataset = rep
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        c.inference_input_type = c.inference_output_type = getattr(tf, io_type)
    return c


def run(method: str, tf, model, io_type: str, rep, profile: Path | None, mlir_timing: bool):
    PHASES.clear()
    tmp = Path(tempfile.mkdtemp(prefix="qat-probe-"))
    try:
        with watch() as w:
            c, setup = make_converter(method, tf, model, tmp)
            configure(tf, c, io_type, rep)
            if mlir_timing:
                c.enable_timing = True
            prof = cProfile.Profile() if profile else None
            if prof:
                prof.enable()
            blob = c.convert()
            if prof:
                prof.disable()
                prof.dump_stats(str(profile / f"{method}-{io_type}.prof"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n== {method} {io_type}: {w['wall']:.2f} s wall (setup/save {setup:.2f} s), "
          f"CPU {w['cpu']:.2f} s ({w['cpu'] / w['wall']:.2f} cores), "
          f"max {w['threads']} threads ({w['threads_before']} before), {len(blob):,} bytes",
          flush=True)
    for label, s in sorted(PHASES.items()):
        print(f"   {label:<62}{s:7.2f} s")
    return bytes(blob), w["wall"]


def diff(a: bytes, b: bytes) -> list[str]:
    """How two .tflite files differ: tensors (name, shape, type, quantization, data),
    operators, signatures and metadata."""
    from tensorflow.lite.tools import flatbuffer_utils as fu

    ma, mb = fu.read_model_from_bytearray(a), fu.read_model_from_bytearray(b)
    out = []

    def buf(m, i):
        d = m.buffers[i].data
        return None if d is None else bytes(np.asarray(d, dtype=np.uint8))

    def q(t):
        qp = t.quantization
        if qp is None:
            return None
        return tuple(None if v is None else np.asarray(v).tolist()
                     for v in (qp.scale, qp.zeroPoint, qp.min, qp.max)) + (qp.quantizedDimension,)

    sa, sb = ma.subgraphs[0], mb.subgraphs[0]
    if len(sa.tensors) != len(sb.tensors):
        out.append(f"tensor count {len(sa.tensors)} vs {len(sb.tensors)}")
    for i, (ta, tb) in enumerate(zip(sa.tensors, sb.tensors, strict=False)):
        for what, va, vb in [("name", ta.name, tb.name),
                             ("shape", list(ta.shape), list(tb.shape)),
                             ("shapeSignature", None if ta.shapeSignature is None else
                              list(ta.shapeSignature),
                              None if tb.shapeSignature is None else list(tb.shapeSignature)),
                             ("type", ta.type, tb.type), ("quant", q(ta), q(tb)),
                             ("data", buf(ma, ta.buffer), buf(mb, tb.buffer))]:
            if va != vb:
                shown = (va, vb) if what != "data" else ("<bytes>", "<bytes>")
                out.append(f"tensor {i} {what}: {shown[0]!r} vs {shown[1]!r}")
    def ops(m, s):
        return [(m.operatorCodes[o.opcodeIndex].builtinCode, list(o.inputs), list(o.outputs))
                for o in s.operators]

    if ops(ma, sa) != ops(mb, sb):
        out.append("operators differ")
    for what, va, vb in [("inputs", list(sa.inputs), list(sb.inputs)),
                         ("outputs", list(sa.outputs), list(sb.outputs)),
                         ("subgraph name", sa.name, sb.name)]:
        if va != vb:
            out.append(f"{what}: {va!r} vs {vb!r}")
    def sig(m):
        return [(s.signatureKey, [(t.name, t.tensorIndex) for t in s.inputs],
                 [(t.name, t.tensorIndex) for t in s.outputs]) for s in (m.signatureDefs or [])]

    if sig(ma) != sig(mb):
        out.append(f"signatures: {sig(ma)} vs {sig(mb)}")
    def meta(m):
        return {x.name: buf(m, x.buffer) for x in (m.metadata or [])}

    for k in sorted(set(meta(ma)) | set(meta(mb))):
        if meta(ma).get(k) != meta(mb).get(k):
            out.append(f"metadata {k!r} differs")
            if k == b"CONVERSION_METADATA":
                ca, cb = conversion_metadata(a), conversion_metadata(b)
                out += [f"   {f}: {ca.get(f)!r} vs {cb.get(f)!r}" for f in sorted(ca)
                        if repr(ca.get(f)) != repr(cb.get(f))]
    return out


def conversion_metadata(blob: bytes) -> dict:
    """The CONVERSION_METADATA entry of a .tflite, decoded (environment and options)."""
    from tensorflow.lite.python import conversion_metadata_schema_py_generated as cm
    from tensorflow.lite.tools import flatbuffer_utils as fu

    m = fu.read_model_from_bytearray(blob)
    for x in m.metadata or []:
        if x.name == b"CONVERSION_METADATA":
            data = bytes(np.asarray(m.buffers[x.buffer].data, dtype=np.uint8))
            meta = cm.ConversionMetadataT.InitFromObj(cm.ConversionMetadata.GetRootAs(data))
            return {**{f"environment.{k}": v for k, v in vars(meta.environment).items()},
                    **{f"options.{k}": v for k, v in vars(meta.options).items()}}
    return {}


def outputs(blob: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=blob)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    res = []
    for img in x:
        v = img[None]
        if i["dtype"] != np.float32:
            s, z = i["quantization"]
            v = np.clip(np.round(v / s + z), -128, 127).astype(i["dtype"])
        it.set_tensor(i["index"], v)
        it.invoke()
        res.append(it.get_tensor(o["index"])[0].copy())
    return np.stack(res)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="MNIST IDX folder (default: random data)")
    ap.add_argument("--io", default="float32")
    ap.add_argument("--methods", default="keras,quantflow,module_sm,nt_sm_type,concrete_none")
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--profile", type=Path, help="write cProfile stats here")
    ap.add_argument("--mlir-timing", action="store_true", help="converter.enable_timing")
    ap.add_argument("--test-images", type=int, default=500)
    args = ap.parse_args()

    from quantflow.core.tfenv import tf_modules
    tf, keras = tf_modules()
    instrument()
    if args.data:
        from _mnist32 import mnist32
        images, labels = mnist32(args.data)
        x = images.astype(np.float32) / 255.0
        y = labels
    else:
        rng = np.random.default_rng(0)
        x = rng.random((1000, 32, 32, 3), dtype=np.float32)
        y = rng.integers(0, 10, 1000).astype(np.int64)
    cal = x[np.sort(np.random.default_rng(0).choice(8000 if args.data else 800, 200, False))]

    def rep():
        for i in range(len(cal)):
            yield [cal[i : i + 1]]

    t = time.perf_counter()
    model = build_qat(tf, keras, x, y, args.batches)
    print(f"build + fine-tune {args.batches} batches: {time.perf_counter() - t:.1f} s")
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    test = x[len(x) - args.test_images:]
    for io_type in args.io.split(","):
        results = {}
        for _ in range(args.repeat):
            for m in args.methods.split(","):
                results[m] = run(m, tf, model, io_type, rep, args.profile, args.mlir_timing)
        ref = results.get("keras")
        for m, (blob, _) in results.items():
            if ref is None or m == "keras":
                continue
            same = blob == ref[0]
            print(f"-- {m} vs keras ({io_type}): {'identical bytes' if same else 'BYTES DIFFER'}")
            if not same:
                for line in diff(ref[0], blob)[:40]:
                    print("     " + line)
                oa, ob = outputs(ref[0], test), outputs(blob, test)
                print(f"     outputs on {len(test)} images: max |diff| "
                      f"{np.abs(oa.astype(float) - ob.astype(float)).max()}, "
                      f"argmax agree {np.mean(oa.argmax(1) == ob.argmax(1)):.4f}")
    if args.profile:
        for f in sorted(args.profile.glob("*.prof")):
            print(f"\n#### cProfile {f.name} (cumulative, top 25)")
            pstats.Stats(str(f)).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
