"""Feeding a .tflite model on LiteRT: inputs by signature name, batches the model accepts, and
no state carried from one test sample to the next.

Every input is looked up by its signature name (the model input names the npz source maps to
array keys), never by position: the converter orders tensors as it likes. A model with a
static batch size is fed exactly that many samples at a time (resizing a batch-1 RNN to 256
crashes it). Stateful models are reset before every batch: a fused LSTM keeps its state in
variable tensors (``reset_all_variables`` clears them), a Keras ``stateful=True`` layer in
resource variables, which only a fresh interpreter clears.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from quantflow.core import io
from quantflow.core.io import Inputs
from quantflow.core.specbase import INTEGER_IO

INDEX_DTYPES = ("int32", "int64")  # integer inputs that are data (token ids), not quantized


def quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Float inputs to the tensor's dtype: x / scale + zero_point, rounded and clipped.
    Integer token ids into an int32 input are only cast."""
    dtype = np.dtype(detail["dtype"])
    if dtype.name not in INTEGER_IO:
        return x.astype(dtype)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def dequantize(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Integer outputs back to float with the output's scale and zero point."""
    if np.dtype(detail["dtype"]).name not in INTEGER_IO:
        return y.astype(np.float32)
    scale, zero = detail["quantization"]
    return (y.astype(np.float32) - zero) * scale


def ports(interpreter: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """({input name: detail}, {output name: detail}) by signature name; a model without a
    signature (an old user .tflite) by tensor name."""
    signatures = interpreter.get_signature_list()
    if not signatures:
        return ({d["name"]: d for d in interpreter.get_input_details()},
                {d["name"]: d for d in interpreter.get_output_details()})
    key = "serving_default" if "serving_default" in signatures else sorted(signatures)[0]
    runner = interpreter.get_signature_runner(key)
    return runner.get_input_details(), runner.get_output_details()


def pick_output(outputs: dict[str, Any], wanted: str | None) -> str:
    """The prediction output: the one named by evaluation.output, or the only one."""
    if wanted is not None and wanted not in outputs:
        raise ValueError(f"evaluation.output {wanted!r}: the model has no such output; it has "
                         f"{', '.join(sorted(outputs))}")
    if wanted is None and len(outputs) != 1:
        raise ValueError(f"the model has {len(outputs)} outputs ({', '.join(sorted(outputs))}); "
                         "set evaluation.output to the one holding the prediction")
    return wanted or next(iter(outputs))


def state_kind(model: bytes) -> str | None:
    """'variables' (fused RNN state tensors), 'resources' (VAR_HANDLE ops), or None."""
    from ai_edge_litert import schema_py_generated as schema

    root = schema.Model.GetRootAs(model, 0)
    for g in range(root.SubgraphsLength()):
        graph = root.Subgraphs(g)
        if any(graph.Tensors(t).IsVariable() for t in range(graph.TensorsLength())):
            return "variables"
    codes = (root.OperatorCodes(i) for i in range(root.OperatorCodesLength()))
    if any(max(c.BuiltinCode(), c.DeprecatedBuiltinCode()) == schema.BuiltinOperator.VAR_HANDLE
           for c in codes):
        return "resources"
    return None


class Runner:
    """One .tflite model on one interpreter, fed by input name."""

    def __init__(self, tflite: Path, threads: int, output: str | None = None) -> None:
        self.model, self.threads = Path(tflite).read_bytes(), threads
        self.state = state_kind(self.model)
        self.interpreter = self._fresh()
        self.inputs, outputs = ports(self.interpreter)
        self.output = outputs[pick_output(outputs, output)]
        self.shapes = {k: tuple(v["shape"]) for k, v in self.inputs.items()}
        batch = int(next(iter(self.inputs.values()))["shape_signature"][0])
        self.static_batch = batch if batch > 0 else None

    def _fresh(self) -> Any:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_content=self.model, num_threads=self.threads)
        interpreter.allocate_tensors()
        return interpreter

    def named(self, x: Inputs) -> dict[str, np.ndarray]:
        """``x`` by model input name: one array fits a one-input model whatever its name."""
        if not isinstance(x, dict):
            if len(self.inputs) != 1:
                raise ValueError(f"the model has inputs {', '.join(sorted(self.inputs))}; "
                                 "give one array per input (npz x_key mapping)")
            return {next(iter(self.inputs)): x}
        if set(x) != set(self.inputs):
            raise ValueError(f"the model's inputs are {', '.join(sorted(self.inputs))}; the "
                             f"data has {', '.join(sorted(x))}")
        return x

    def set_batch(self, batch: dict[str, np.ndarray]) -> None:
        """Set every input, resizing only a dynamic batch dimension, from a clean state."""
        if self.state == "resources":
            self.interpreter = self._fresh()
            self.shapes = {k: tuple(v["shape"]) for k, v in self.inputs.items()}
        elif self.state == "variables":
            self.interpreter.reset_all_variables()
        resized = [name for name, arr in batch.items()
                   if self.static_batch is None and self.shapes[name] != arr.shape]
        for name in resized:
            self.interpreter.resize_tensor_input(self.inputs[name]["index"],
                                                 list(batch[name].shape))
            self.shapes[name] = batch[name].shape
        if resized:
            self.interpreter.allocate_tensors()
        for name, arr in batch.items():
            detail = self.inputs[name]
            self.interpreter.set_tensor(detail["index"], quantize(arr, detail))

    def predict_all(self, x: Inputs, batch_size: int) -> np.ndarray:
        """Float prediction outputs for every example of ``x``; the last static-size batch is
        padded with copies of its last sample and the padding dropped."""
        named, total = self.named(x), io.examples(x)
        size = self.static_batch or batch_size
        outputs = []
        for start in range(0, total, size):
            rows = np.arange(start, start + size).clip(max=total - 1)
            rows = rows if self.static_batch else rows[: total - start]
            self.set_batch({k: v[rows] for k, v in named.items()})
            self.interpreter.invoke()
            got = dequantize(self.interpreter.get_tensor(self.output["index"]), self.output)
            outputs.append(got[: min(size, total - start)])
        return np.concatenate(outputs)

    def first_sample(self, x: Inputs) -> None:
        """Set one sample (or the model's static batch of it) for latency timing."""
        named = self.named(x)
        rows = np.zeros(self.static_batch or 1, dtype=np.int64)
        self.set_batch({k: v[rows] for k, v in named.items()})
