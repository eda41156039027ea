"""``engine: converter | ai_edge_quantizer``: the one option the post-training kinds share.

With ``converter`` (the default, what the kinds always did) a kind converts export's SavedModel
with the TFLite converter. With ``ai_edge_quantizer`` it rewrites export's float .tflite with an
AEQ recipe instead: about a second of calibration and quantization where the converter takes
a conversion per variant, and no SavedModel needed, so a float `.tflite` `path:` model can use
every such kind. Each kind's module keeps its own recipe (built with the helpers below) next to
its converter settings; the option, what it requires and the AEQ run live here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from quantflow.core.specbase import VariantBase
from quantflow.variants import ConvertInputs
from quantflow.variants._common import SAVED_MODEL

AEQ = "ai_edge_quantizer"
Engine = Literal["converter", "ai_edge_quantizer"]


class _Requires:
    """``requires`` decided by the engine: on a variant, what its own engine needs (the
    converter: the SavedModel; AEQ: only the float .tflite export writes for every model); on
    the class (the registry, the schema, lists of kinds) what the default engine needs."""

    def __get__(self, variant: Any, owner: type) -> frozenset[str]:
        if variant is None or variant.engine == "converter":
            return SAVED_MODEL
        return frozenset()


class EngineVariant(VariantBase):
    """Base of the kinds that offer both engines."""

    engine: Engine = Field(
        "converter", description="converter: the TFLite converter from the SavedModel (the "
        "default); ai_edge_quantizer: an ai-edge-quantizer recipe applied to the float "
        ".tflite (faster; needs no SavedModel, so it also serves a .tflite model).",
    )

    requires = _Requires()  # type: ignore[assignment]
    requires_with: ClassVar[dict[str, frozenset[str]]] = {f"engine: {AEQ}": frozenset()}


def dynamic_int8() -> list[dict[str, Any]]:
    """Int8 weights (per channel), float activations: AEQ's dynamic range recipe."""
    from ai_edge_quantizer import recipe

    return recipe.dynamic_wi8_afp32()


def float16_weights() -> list[dict[str, Any]]:
    """Weights cast to float16 and dequantized before use (AEQ's float casting)."""
    from ai_edge_quantizer import algorithm_manager, qtyping, recipe_manager

    manager = recipe_manager.RecipeManager()
    manager.add_weight_only_config(
        regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16,
        algorithm_key=algorithm_manager.AlgorithmName.FLOAT_CASTING)
    return manager.get_quantization_recipe()


def static(activation_bits: int, io_type: str) -> list[dict[str, Any]]:
    """Int8 weights, ``activation_bits`` activations, and the interface asked for."""
    from ai_edge_quantizer import recipe

    from quantflow.variants._aeq import interface

    rules = recipe.static_wi8_ai8() if activation_bits == 8 else recipe.static_wi8_ai16()
    return rules + interface(rules[0], io_type)


def float_ops(model: bytes) -> list[str]:
    """Ops that compute in float (a float32 output; DEQUANTIZE, the float interface's last
    op, aside): what AEQ leaves of an op it cannot quantize, silently."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=model)
    details = interp.get_tensor_details()
    return [op["op_name"] for op in interp._get_ops_details()  # noqa: SLF001 - the op list
            if op["op_name"] != "DEQUANTIZE"
            and any(details[t]["dtype"] == np.float32 for t in op["outputs"] if t >= 0)]


def aeq_convert(inputs: ConvertInputs, out: Path, rules: list[dict[str, Any]], *,
                calibrate: bool, io_type: str = "float32", no_float: str = "") -> Path:
    """Quantize the float .tflite with ``rules`` (calibrated on the calibration samples when
    ``calibrate``) and write it atomically. ``no_float`` is the advice for a kind that forbids
    float kernels: where the converter would fail, so does this, instead of shipping them."""
    from quantflow.core import io
    from quantflow.variants import _aeq

    if inputs.float_tflite is None or not inputs.float_tflite.is_file():
        raise ValueError(f"engine {AEQ} quantizes export's float .tflite, which is missing")
    qsvs = _aeq.calibrate(inputs.float_tflite, io.load_calibration(inputs.calibration),
                          rules) if calibrate else None
    data = _aeq.quantized(inputs.float_tflite, rules, qsvs, io_type)
    left = float_ops(data) if no_float else []
    if left:
        raise ValueError(f"ai-edge-quantizer left {len(left)} ops in float "
                         f"({', '.join(sorted(set(left)))}); {no_float}")
    return io.write_bytes(out, data)
