"""A model's signature (input and output names, shapes, dtypes), read the way each source
hands its model on: a Keras model object, a SavedModel signature, a .tflite interpreter.

The deep check (``quantflow.domain.inspect``) prints it and compares it with the data; reading
it loads the model, so TensorFlow (or LiteRT) is imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantflow.core.errors import ModelError


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int | None, ...]  # with the batch dimension; None is any size
    dtype: str

    def __str__(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} ({dims}) {self.dtype}"


@dataclass(frozen=True)
class Signature:
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]


def _dims(shape: Any) -> tuple[int | None, ...]:
    dims = shape.as_list() if hasattr(shape, "as_list") else list(shape)
    return tuple(None if d is None or int(d) < 0 else int(d) for d in dims)


def _dtype(dtype: Any) -> str:
    return str(getattr(dtype, "name", dtype))


def of_keras(model: Any) -> Signature:
    """tf_keras and Keras 3 models both expose symbolic ``inputs``/``outputs``; they are named
    as the exported signature will name them (``input_names``/``output_names`` where the
    model has them: the layer names, not the tensors' ``pred/BiasAdd:0``)."""
    def tensors(items: Any, names: Any) -> tuple[Tensor, ...]:
        items = list(items or [])
        names = list(names or [])
        names = names if len(names) == len(items) else [
            str(getattr(t, "name", f"#{i}")).split(":")[0] for i, t in enumerate(items)]
        return tuple(Tensor(str(n), _dims(t.shape), _dtype(t.dtype))
                     for n, t in zip(names, items, strict=True))
    return Signature(tensors(model.inputs, getattr(model, "input_names", None)),
                     tensors(model.outputs, getattr(model, "output_names", None)))


def of_saved_model(rel: str, path: Path, signature: str) -> Signature:
    """The named signature of a SavedModel folder: its inputs and outputs are keyed by name."""
    from quantflow.core.tfenv import tf_modules

    tf, _ = tf_modules()
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:  # any loader failure: not a SavedModel we can use
        raise ModelError(f"model.path {rel!r}: not a loadable SavedModel "
                         f"({type(exc).__name__}: {str(exc)[:300]})") from exc
    if signature not in loaded.signatures:
        raise ModelError(f"model.path {rel!r}: no signature {signature!r}; it has "
                         f"{', '.join(loaded.signatures) or 'none'} (set model.signature)")
    fn = loaded.signatures[signature]
    ins = fn.structured_input_signature[1]
    outs = fn.structured_outputs
    return Signature(
        tuple(Tensor(k, _dims(s.shape), _dtype(s.dtype)) for k, s in sorted(ins.items())),
        tuple(Tensor(k, _dims(s.shape), _dtype(s.dtype)) for k, s in sorted(outs.items())))


def of_tflite(rel: str, path: Path) -> Signature:
    """A .tflite's input and output tensors, read with LiteRT."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    try:
        interp = Interpreter(model_path=str(path))
    except Exception as exc:
        raise ModelError(f"model.path {rel!r}: not a loadable .tflite "
                         f"({type(exc).__name__}: {str(exc)[:300]})") from exc

    from quantflow.domain.feed import ports

    def tensors(details: dict[str, dict[str, Any]]) -> tuple[Tensor, ...]:
        return tuple(Tensor(name, _dims(d["shape_signature"]), np.dtype(d["dtype"]).name)
                     for name, d in sorted(details.items()))
    ins, outs = ports(interp)  # by signature name, as evaluation feeds them
    return Signature(tensors(ins), tensors(outs))
