"""Helpers every converter shares, kept here so each kind's module is only its converter settings.

The spec imports every kind's module (its spec class lives there), so `quantflow validate` pays
for whatever they import at module level. Nothing here imports TensorFlow, NumPy or the file
helpers (which import NumPy) at module level: they are imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from quantflow.core.specbase import INTEGER_IO
from quantflow.core.tfenv import tf_modules
from quantflow.variants import ConvertInputs


def load_model(inputs: ConvertInputs) -> Any:
    """The trained tf_keras model, without its training state (QAT fine-tunes it).

    ``safe_mode=True`` refuses arbitrary Python lambdas in a .keras file we did not write.
    """
    _, keras = tf_modules()
    return keras.models.load_model(str(inputs.trained), compile=False, safe_mode=True)


# What every converter kind needs of the model: export's one SavedModel to convert from.
SAVED_MODEL = frozenset({"saved_model"})


def saved_model_converter(inputs: ConvertInputs) -> Any:
    """A TFLiteConverter of export's SavedModel: every kind converts the graph the float
    baseline was converted from, traced once, instead of re-tracing the Keras model."""
    from quantflow.domain.savedmodel import converter

    return converter(inputs.saved_model, inputs.signature)


def keras_converter(model: Any, folder: Path) -> Any:
    """A TFLiteConverter for an in-memory model: only QAT's fine-tuned model, which exists in
    no SavedModel, needs it. It converts what `from_keras_model` (tfmot's documented path)
    converts, byte for byte, in about a third of the time on a MobileNetV2 (14 s instead of
    37-45 s, bench/probe/qat_convert.py): from_keras_model writes a Keras SavedModel, whose
    save traces every layer's call (over a thousand functions, most of its time) and whose
    reload (for debug info) restores them all, yet the converter reads only the serving
    signature. Here that signature alone is written to ``folder``, which must outlive the
    conversion (the converter reads it in ``convert()``); from_keras_model where it cannot be.
    """
    tf, _ = tf_modules()
    try:
        _save_serving_signature(model, folder)
    except Exception:  # noqa: BLE001 - as from_keras_model, which falls back on any failure
        return tf.lite.TFLiteConverter.from_keras_model(model)
    from tensorflow.lite.python import lite

    # As from_keras_model records it: the model type goes into the conversion metadata.
    lite.TFLiteConverterBase._set_original_model_type(  # noqa: SLF001
        lite.conversion_metadata_fb.ModelType.KERAS_MODEL)
    return lite.TFLiteSavedModelConverterV2(str(folder), {"serve"}, ["serving_default"])


def _save_serving_signature(model: Any, folder: Path) -> None:
    """The SavedModel from_keras_model writes, as the converter sees it: Keras' default serving
    signature (the same trace, so the same input and output names), with debug info (the
    .tflite's tensor names come from it), on a module holding only the model's variables, so
    none of Keras' per-layer traces. A signature that captures anything else (a lookup table)
    is refused by the save: the caller falls back to from_keras_model."""
    tf, _ = tf_modules()
    from tf_keras.src.saving.legacy import saving_utils

    root = tf.Module()
    root.model_variables = list(model.variables)
    tf.saved_model.save(root, str(folder), signatures=saving_utils.trace_model_call(model),
                        options=tf.saved_model.SaveOptions(save_debug_info=True))


def input_dtypes(saved_model: Path, signature: str) -> dict[str, Any]:
    """{input name: numpy dtype} of the signature the converter converts: calibration data is
    cast to them, since the calibrator feeds arrays as they come (an int64 token id array
    into an int32 input, or uint8 pixels into a float one, would fail)."""
    tf, _ = tf_modules()
    from quantflow.domain.savedmodel import signature_def

    found = signature_def(saved_model, signature)
    if found is not None:  # from saved_model.pb: loading the model takes seconds
        return {k: tf.dtypes.as_dtype(v.dtype).as_numpy_dtype for k, v in found.inputs.items()}
    fn = tf.saved_model.load(str(saved_model)).signatures[signature]
    return {k: v.dtype.as_numpy_dtype for k, v in fn.structured_input_signature[1].items()}


def representative_dataset(inputs: ConvertInputs) -> Callable[[], Iterator[Any]]:
    """A generator factory over the calibration samples, one at a time with a batch dim of 1.

    One sample per call matches the converter's calibration loop, which feeds each yielded
    item as the model's inputs for a single invocation: a list for a one-input model, a dict
    by signature input name for several. Integer inputs (token ids) are fed as they are.
    """
    from quantflow.core import io

    x = io.load_calibration(inputs.calibration)
    dtypes = input_dtypes(inputs.saved_model, inputs.signature)

    def gen() -> Iterator[Any]:
        for i in range(io.examples(x)):
            if isinstance(x, dict):
                yield {k: v[i : i + 1].astype(dtypes.get(k, v.dtype)) for k, v in x.items()}
            else:
                dtype = next(iter(dtypes.values())) if len(dtypes) == 1 else x.dtype
                yield [x[i : i + 1].astype(dtype)]

    return gen


def write_tflite(converter: Any, out: Path, inputs: ConvertInputs | None = None) -> Path:
    """Convert and write the model atomically: a failed or killed conversion leaves no file.

    With ``inputs``, a calibrated integer conversion shares the pipeline's one calibration
    (``_calibrated``: same bytes as the converter's own path, calibrated once)."""
    from quantflow.core import io
    from quantflow.domain.savedmodel import convert
    from quantflow.variants import _calibrated

    model = None if inputs is None else _calibrated.convert(
        converter, inputs.float_tflite, inputs.calibration, inputs.calibrated)
    return io.write_bytes(out, convert(converter) if model is None else model)


def set_io_type(converter: Any, io_type: str) -> None:
    """Integer I/O for ``int8``/``uint8``/``int16``; ``float32`` keeps the float interface."""
    if io_type == "float32":
        return
    if io_type not in INTEGER_IO:
        raise ValueError(f"unsupported io_type {io_type!r}; known: float32, "
                         f"{', '.join(INTEGER_IO)}")
    tf, _ = tf_modules()
    dtype = getattr(tf, io_type)
    converter.inference_input_type = dtype
    converter.inference_output_type = dtype

