"""Rank layers by their own int8 error, measured on the float model alone (no candidate built).

A layer's own error is what int8 does to the activations it reads and writes, each tensor
fake-quantized with its calibrated per-tensor scale, compared channel by channel: the share
of each channel's signal power that rounding destroys (noise / signal, capped at 1), averaged
over the channels. Whole-tensor SQNR would miss the classic failure: one outlier channel
sets the scale and the others round to zero, while the outlier keeps the tensor's SQNR high.
An op reads and writes the same tensor as its neighbours, and AEQ quantizes a tensor by both
its producer and its consumer, so an op's error is its worst tensor's: both ends rank together.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from quantflow.variants._aeq import Layer


def fake_int8(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Asymmetric per-tensor int8 over the calibrated range, as AEQ's activations are."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255.0 or 1.0
    zero = np.round(-128 - lo / scale)
    return (np.clip(np.round(x / scale + zero), -128, 127) - zero) * scale


def channel_loss(x: np.ndarray, lo: float, hi: float) -> float:
    """Mean over channels (the last axis) of noise / signal power, each capped at 1."""
    flat = x.astype(np.float64).reshape(-1, x.shape[-1] if x.ndim else 1)
    noise = np.sum((flat - fake_int8(flat, lo, hi)) ** 2, axis=0)
    signal = np.sum(flat ** 2, axis=0)
    ratio = np.where(signal > 0, noise / np.maximum(signal, 1e-300), 0.0)
    return float(np.mean(np.minimum(ratio, 1.0)))


def tensor_losses(float_tflite: Path, x: np.ndarray, qsvs: dict[str, Any]) -> dict[int, float]:
    """Own int8 loss of every calibrated tensor, over the samples ``x`` (a small subset)."""
    from ai_edge_quantizer.utils import tfl_interpreter_utils as tiu

    interp = tiu.create_tfl_interpreter(str(float_tflite), use_xnnpack=False,
                                        preserve_all_tensors=True)
    inp = interp.get_input_details()[0]
    wanted = {d["index"]: d["name"] for d in interp.get_tensor_details()
              if d["name"] in qsvs and d["dtype"] == np.float32 and len(d["shape"])}
    values: dict[int, list[np.ndarray]] = {i: [] for i in wanted}
    for i in range(len(x)):
        interp.set_tensor(inp["index"], x[i : i + 1].astype(np.float32))
        interp.invoke()
        for index in wanted:
            values[index].append(np.array(interp.get_tensor(index)))
    out = {}
    for index, name in wanted.items():
        lo, hi = float(np.min(qsvs[name]["min"])), float(np.max(qsvs[name]["max"]))
        out[index] = channel_loss(np.concatenate(values[index]), lo, hi)
    return out


def rank(layers: list[Layer], losses: dict[int, float]) -> list[tuple[Layer, float]]:
    """Layers, worst first (ties in graph order, so a run ranks the same way twice)."""
    scored = [(layer, max([losses.get(t, 0.0) for t in layer.inputs + layer.outputs]))
              for layer in layers]
    return sorted(scored, key=lambda s: (-s[1], s[0].index))


def model_name(scope: str) -> str:
    """The model's own layer name in a TFLite tensor name: the Keras layer in
    ``model/conv2d/Relu;model/conv2d/BiasAdd``: the most common second path part (as traced:
    Keras 3 may append ``_1``), or the tensor name itself when it has no path."""
    parts = [p.split("/") for p in scope.split(";") if "/" in p]
    if not parts:
        return scope
    name = Counter(p[1] for p in parts if len(p) > 1).most_common(1)
    return name[0][0] if name else scope
