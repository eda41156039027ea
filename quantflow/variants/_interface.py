"""uint8 inputs and outputs for an int8 model that ai-edge-quantizer wrote with int8 ones.

AEQ's static recipe gives a model int8 (or float) I/O, never uint8. TensorFlow's
``modify_model_interface`` (a pybind in ai_edge_litert; TF 2.21 ships no Python lib for it)
rewrites only a float-I/O model whose every input feeds one QUANTIZE op, and a Keras Reshape
at the input (a SHAPE op reading it too) already breaks that, so it reports success and leaves
the input float. This rewrite needs no such pattern: each int8 input becomes uint8 (same scale,
zero point + 128) read by a new QUANTIZE op into the int8 tensor the graph consumed, and each
int8 output is requantized by a QUANTIZE op into a new uint8 output. Requantizing between int8
and uint8 of one scale is exact, so the model computes what the int8 one does.
"""

from __future__ import annotations

import copy
from typing import Any

UINT8_SHIFT = 128


def _quantize_opcode(model: Any) -> int:
    """Index of the QUANTIZE operator code, added when the model has none."""
    from ai_edge_litert import schema_py_generated as fb

    code = fb.BuiltinOperator.QUANTIZE
    for i, op in enumerate(model.operatorCodes):
        if max(op.builtinCode, op.deprecatedBuiltinCode) == code:
            return i
    new = fb.OperatorCodeT()
    new.builtinCode, new.deprecatedBuiltinCode, new.version = code, code, 1
    model.operatorCodes.append(new)
    return len(model.operatorCodes) - 1


def _as_uint8(tensor: Any) -> None:
    from ai_edge_litert import schema_py_generated as fb

    tensor.type = fb.TensorType.UINT8
    tensor.quantization.zeroPoint = [int(z) + UINT8_SHIFT for z in tensor.quantization.zeroPoint]


def _twin(model: Any, graph: Any, index: int, suffix: str) -> int:
    """A copy of tensor ``index`` (same type and scale, an empty buffer of its own)."""
    from ai_edge_litert import schema_py_generated as fb

    tensor = copy.deepcopy(graph.tensors[index])
    name = tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name
    tensor.name = name + suffix
    model.buffers.append(fb.BufferT())
    tensor.buffer = len(model.buffers) - 1
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def _op(opcode: int, source: int, target: int) -> Any:
    from ai_edge_litert import schema_py_generated as fb

    op = fb.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = opcode, [source], [target]
    return op


def to_uint8(model_bytes: bytes) -> bytes:
    """The same model with uint8 inputs and outputs; refuses a model whose I/O is not int8."""
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    graph, opcode = model.subgraphs[0], _quantize_opcode(model)
    for index in list(graph.inputs) + list(graph.outputs):
        if graph.tensors[index].type != fb.TensorType.INT8:
            raise ValueError("uint8 I/O needs a model with int8 inputs and outputs; tensor "
                             f"{graph.tensors[index].name!r} is not int8")
    for index in graph.inputs:
        inner = _twin(model, graph, index, "_int8")
        for op in graph.operators:
            op.inputs = [inner if t == index else t for t in op.inputs]
        _as_uint8(graph.tensors[index])  # keeps its index: what the signature names
        graph.operators.insert(0, _op(opcode, index, inner))
    renamed = {}
    for n, index in enumerate(list(graph.outputs)):
        outer = _twin(model, graph, index, "_uint8")
        _as_uint8(graph.tensors[outer])
        graph.operators.append(_op(opcode, index, outer))
        graph.outputs[n], renamed[index] = outer, outer
    for signature in model.signatureDefs or []:
        for item in signature.outputs or []:
            item.tensorIndex = renamed.get(item.tensorIndex, item.tensorIndex)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))

