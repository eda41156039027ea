"""ai-edge-quantizer plumbing for the kinds that quantize a float .tflite layer by layer.

ai-edge-quantizer (AEQ) rewrites a float .tflite from a *recipe*: regex-scoped rules matched
against each op's scope (its output tensor names, each followed by ``;``), the last matching
rule winning. A candidate here is ``{layer scope: precision}`` over a full-int8 base rule, so
one calibration serves every candidate (the min/max of the float model's tensors do not
depend on the recipe). AEQ prints tqdm bars and progress reports; they go to the log.
"""

from __future__ import annotations

import contextlib
import copy
import io as _io
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PRECISIONS = ("int8", "int16", "float")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Layer:
    """One quantizable op: its AEQ scope (first output tensor), op type and tensor indices."""

    scope: str
    op: str
    index: int
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """AEQ's progress bars and reports would flood the terminal of every quantize worker;
    they are kept, but in the log (STYLE 15)."""
    out, err = _io.StringIO(), _io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield
    finally:
        text = (out.getvalue() + err.getvalue()).strip()
        if text:
            log.debug("ai-edge-quantizer: %s", text[-4000:])


def calibration_data(float_tflite: Path, x: Any) -> dict[str, list[dict[str, Any]]]:
    """AEQ's calibration format, ``{signature: [{input name: one-sample batch}, ...]}``; ``x``
    is one array, or a dict by input name (the calibration file of a several-input model)."""
    from ai_edge_litert.interpreter import Interpreter

    from quantflow.core import io

    signatures = Interpreter(model_path=str(float_tflite)).get_signature_list()
    key = next(iter(signatures))
    if isinstance(x, dict):
        return {key: [{k: v[i : i + 1] for k, v in x.items()} for i in range(io.examples(x))]}
    name = signatures[key]["inputs"][0]
    return {key: [{name: x[i : i + 1]} for i in range(len(x))]}


def calibrate(float_tflite: Path, x: Any, rules: list[dict[str, Any]] | None = None) \
        -> dict[str, Any]:
    """Min/max of every tensor of the float model over ``x``: once per search or variant."""
    from ai_edge_quantizer import quantizer, recipe

    q = quantizer.Quantizer(str(float_tflite), rules or recipe.static_wi8_ai8())
    with quiet():
        return q.calibrate(calibration_data(float_tflite, x), num_threads=1)


def layers(float_tflite: Path, qsvs: dict[str, Any]) -> list[Layer]:
    """The ops a recipe can move: those whose float output was calibrated (activations)."""
    from ai_edge_quantizer.utils import tfl_interpreter_utils as tiu

    interp = tiu.create_tfl_interpreter(str(float_tflite), use_xnnpack=False)
    details = interp.get_tensor_details()
    found = []
    for op in interp._get_ops_details():  # noqa: SLF001 - the only op list the runtime has
        outs = [int(t) for t in op["outputs"] if t >= 0]
        if outs and details[outs[0]]["name"] in qsvs and details[outs[0]]["dtype"].__name__ \
                == "float32":
            found.append(Layer(details[outs[0]]["name"], op["op_name"], int(op["index"]),
                               tuple(int(t) for t in op["inputs"] if t >= 0), tuple(outs)))
    return found


def _scope_regex(scope: str) -> str:
    return "(^|;)" + re.escape(scope) + ";"


def recipe(precisions: dict[str, str], io_type: str) -> list[dict[str, Any]]:
    """Full int8 (AEQ's static_wi8_ai8), one rule per layer moved up, and the interface asked
    for: float I/O, or int8 (AEQ's int8 recipe quantizes the model's interface too)."""
    from ai_edge_quantizer import recipe as recipes

    rules = recipes.static_wi8_ai8()
    base = rules[0]
    for scope, precision in sorted(precisions.items()):
        if precision == "float":
            rules.append({"regex": _scope_regex(scope), "operation": "*",
                          "algorithm_key": "no_quantize"})
        elif precision == "int16":
            config = copy.deepcopy(base["op_config"])
            config["activation_tensor_config"].update(num_bits=16, symmetric=True)
            rules.append({"regex": _scope_regex(scope), "operation": "*",
                          "algorithm_key": base["algorithm_key"], "op_config": config})
    return rules + interface(base, io_type)


def interface(base: dict[str, Any], io_type: str) -> list[dict[str, Any]]:
    """The rules that decide the model's I/O, last and under a scope of their own (rules of
    one regex share a slot in AEQ's order; a layer's rule also matches the virtual INPUT/OUTPUT
    ops next to it): float I/O, or that of ``base`` (AEQ's static recipes quantize the model's
    interface too: int8 or int16). uint8 is made from int8 afterwards (``_interface``)."""
    side = {"algorithm_key": "no_quantize"} if io_type == "float32" else \
        {"algorithm_key": base["algorithm_key"], "op_config": base["op_config"]}
    return [{"regex": "^", "operation": op, **side} for op in ("INPUT", "OUTPUT")]


def quantized(float_tflite: Path, rules: list[dict[str, Any]], qsvs: dict[str, Any] | None,
              io_type: str = "float32") -> bytes:
    """The model of one recipe (``qsvs`` None: a recipe that calibrates nothing, dynamic
    range or float16 weights); uint8 I/O is rewritten from int8 (``_interface``)."""
    from ai_edge_quantizer import quantizer

    from quantflow.variants._interface import to_uint8

    q = quantizer.Quantizer(str(float_tflite), rules)
    with quiet():
        result = q.quantize(qsvs, enable_progress_bar=False, enable_progress_report=False)
    data = bytes(result.quantized_model)
    return to_uint8(data) if io_type == "uint8" else data


def quantize(float_tflite: Path, rules: list[dict[str, Any]], qsvs: dict[str, Any] | None,
             out: Path, io_type: str = "float32") -> Path:
    """Write the model of one recipe atomically."""
    from quantflow.core import io

    return io.write_bytes(out, quantized(float_tflite, rules, qsvs, io_type))
