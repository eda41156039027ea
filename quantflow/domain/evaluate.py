"""Measure one .tflite model: its metrics, size, latency, and whether its tensor types keep the
promise of its kind.

Inference runs on ``ai_edge_litert`` (the runtime devices ship), never ``tf.lite``, so what is
measured here is what gets deployed. Integer I/O is quantized and dequantized with the tensors'
own scale and zero point, so an int8 model is scored on the same inputs as the float one.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from quantflow import variants
from quantflow.core import io
from quantflow.core.io import Inputs
from quantflow.core.results import Latency, TensorTypes, VariantMetrics
from quantflow.core.spec import EvaluationSpec
from quantflow.core.specbase import Expected
from quantflow.domain import scoring
from quantflow.domain.compare import against_baseline
from quantflow.domain.feed import (  # noqa: F401 - quantize/dequantize re-exported
    INDEX_DTYPES,
    Runner,
    dequantize,
    pick_output,
    ports,
    quantize,
)


def expected_types(kind: str, variant: Any = None) -> Expected:
    """The promise of ``kind`` (each kind's module states its own); without ``variant``, that
    of the kind's defaults. "float" is the float baseline."""
    if variant is not None:
        return variant.promise()
    if kind == "float":
        return variants.FLOAT_PROMISE
    spec = variants.kind(kind).spec
    return spec.model_construct(name=kind, kind=kind).promise()


def check_types(tensors: TensorTypes, kind: str, variant: Any = None) -> list[str]:
    """Mismatches between the measured tensor types and the kind's promise (empty: all kept)."""
    want, problems = expected_types(kind, variant), []
    for side, got in (("input", tensors.input_dtype), ("output", tensors.output_dtype)):
        if side == "input" and got in INDEX_DTYPES:
            continue  # token ids stay integer: the promise is about float data inputs
        if want.io is not None and got != want.io:
            problems.append(f"{side} dtype is {got}, expected {want.io}")
    if want.weights is not None and want.weights not in tensors.weight_dtypes:
        problems.append(f"no {want.weights} weights (have {sorted(tensors.weight_dtypes)})")
    for dtype in want.forbidden:
        if tensors.weight_dtypes.get(dtype):
            problems.append(f"{tensors.weight_dtypes[dtype]} {dtype} weights, expected none")
    return problems


def evaluate_tflite(
    tflite: Path,
    dataset: Path,
    cfg: EvaluationSpec,
    *,
    name: str,
    kind: str,
    float_size: int | None = None,
    baseline: VariantMetrics | None = None,
    float_outputs: Path | None = None,
    save_outputs: Path | None = None,
    variant: Any = None,
    latency_lock: Path | None = None,
    workspace: Path | None = None,
) -> VariantMetrics:
    """Every metric the gate needs, measured on the test split of ``dataset``.

    ``baseline`` (the float model's metrics) and ``float_outputs`` (its raw outputs, which
    export saves with ``save_outputs``) make the drop, its interval and the fidelity numbers
    possible. A model whose tensor types break its kind's promise (see :func:`check_types`)
    is returned with ``status="failed"`` and the mismatches in ``error``, but with all metrics
    still filled in: the report can then show what the converter really produced. Errors that
    prevent measuring at all (unreadable model, bad dataset) propagate as exceptions.
    """
    start = time.perf_counter()
    data = io.load_dataset(dataset)
    x, y = data.x_test, data.y_test
    size = Path(tflite).stat().st_size
    raw = predict_all(tflite, x, cfg)
    if save_outputs is not None:
        io.save_npy(save_outputs, raw)
    base_raw = np.load(float_outputs, allow_pickle=False) if float_outputs else None
    quality = scoring.score(cfg, y, data.y_train, raw, baseline, base_raw, workspace)
    tensors = tensor_types(tflite, cfg.output)
    problems = check_types(tensors, kind, variant)
    vs = against_baseline(quality["metric_value"], size,
                          baseline.metric_value if baseline else None,
                          float_size or (baseline.size_bytes if baseline else None),
                          higher_is_better=quality["higher_is_better"])
    acc_vs = against_baseline(quality["accuracy"], None, baseline.accuracy if baseline else None,
                              None)
    error = f"tensor types break the {kind} promise: {'; '.join(problems)}" if problems else None
    return VariantMetrics(
        name=name, kind=kind, status="failed" if problems else "ok", error=error, **quality,
        num_classes=data.num_classes or None, test_examples=len(y), size_bytes=size,
        compression_ratio=vs.compression_ratio, metric_drop=vs.drop,
        relative_drop=vs.relative_drop, accuracy_drop=acc_vs.drop,
        latency=measure_latency(tflite, io.take(x, slice(0, 1)), cfg, latency_lock),
        tensors=tensors,
        evaluate_seconds=time.perf_counter() - start,
    )


def load_test_split(dataset: Path) -> tuple[Inputs, np.ndarray, int]:
    """(x_test, y_test, num_classes) of the prepared dataset; x_test by input name when the
    model has several inputs."""
    data = io.load_dataset(dataset)
    return data.x_test, data.y_test, data.num_classes


def predict_all(tflite: Path, x: Inputs, cfg: EvaluationSpec) -> np.ndarray:
    """The float prediction outputs (``cfg.output``) of the model for every example of ``x``.

    The one place that runs a model over the test set: inputs by signature name, whole
    batches where the batch size is free (its own batch size where it is fixed), and the
    state of a stateful model reset between samples (see ``quantflow.domain.feed``).
    """
    return Runner(tflite, cfg.threads, cfg.output).predict_all(x, cfg.batch_size)


def measure_latency(
    tflite: Path, sample: Inputs, cfg: EvaluationSpec, lock: Path | None = None
) -> Latency:
    """Single-sample latency on a fresh interpreter, timing invoke() alone.

    Holds an exclusive lock on ``lock`` while timing so variants evaluated in parallel
    processes do not compete for the CPU and distort each other's numbers.
    """
    runner = Runner(tflite, cfg.threads, cfg.output)
    runner.first_sample(sample)  # sizes the inputs to one sample (or the fixed batch)
    interpreter = runner.interpreter
    times = []
    with _exclusive(lock), _pinned(cfg.threads):
        for _ in range(cfg.warmup_runs):
            interpreter.invoke()
        for _ in range(cfg.timed_runs):
            t0 = time.perf_counter_ns()
            interpreter.invoke()
            times.append((time.perf_counter_ns() - t0) / 1e6)
    p50, p95 = np.percentile(times, [50, 95])
    return Latency(
        p50_ms=float(p50),
        p95_ms=float(p95),
        mean_ms=float(np.mean(times)),
        threads=cfg.threads,
        warmup_runs=cfg.warmup_runs,
        timed_runs=cfg.timed_runs,
    )


def tensor_types(tflite: Path, output: str | None = None) -> TensorTypes:
    """I/O dtypes from the interpreter (the first data input by name, token-id inputs only
    when there is nothing else; the prediction output); weight dtypes from the flatbuffer,
    the only place that says which tensors are constants."""
    interpreter = _interpreter(tflite, 1)
    ins, outs = ports(interpreter)
    order = sorted(ins, key=lambda k: (np.dtype(ins[k]["dtype"]).name in INDEX_DTYPES, k))
    inp, out = ins[order[0]], outs[pick_output(outs, output)]
    scale, zero = inp["quantization"]
    return TensorTypes(
        input_dtype=np.dtype(inp["dtype"]).name,
        output_dtype=np.dtype(out["dtype"]).name,
        input_quantization=(float(scale), int(zero)) if scale else None,
        weight_dtypes=weight_dtypes(Path(tflite).read_bytes()),
    )


def weight_dtypes(model: bytes) -> dict[str, int]:
    """Count constant tensors (those backed by a non-empty buffer) per dtype name."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k.lower() for k, v in vars(schema.TensorType).items() if k.isupper()}
    root = schema.Model.GetRootAs(model, 0)
    counts: dict[str, int] = {}
    for g in range(root.SubgraphsLength()):
        graph = root.Subgraphs(g)
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            buffer = root.Buffers(tensor.Buffer()) if tensor.Buffer() else None
            if buffer is not None and (buffer.DataLength() or buffer.Size()):
                name = names.get(tensor.Type(), str(tensor.Type()))
                counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def _interpreter(tflite: Path, threads: int) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite), num_threads=threads)
    interpreter.allocate_tensors()
    return interpreter


@contextmanager
def _pinned(threads: int) -> Iterator[None]:
    """Single-threaded timing stays on one core: migrations between cores are the largest
    source of run-to-run spread for microsecond-scale invocations."""
    if threads != 1 or not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@contextmanager
def _exclusive(lock: Path | None) -> Iterator[None]:
    """An fcntl lock across processes; no lock file means no serialisation."""
    if lock is None:
        yield
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
