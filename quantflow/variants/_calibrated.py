"""Calibrate once per pipeline for the converter's integer kinds (int8_float_fallback, int8 with
any I/O type, int16x8), with results byte-identical to the converter's own path.

The converter quantizes a float TFLite model in three phases: it converts the SavedModel to a
float flatbuffer, runs the representative dataset through it (calibration: the min/max of every
tensor) and quantizes from those statistics. The first two phases are the same for every
integer kind of a pipeline: the float flatbuffer is export's float.tflite (the same converter
on the same SavedModel), and the statistics depend only on it and the calibration samples. So
the calibrated model is made once, kept under a key of what it depends on, and each kind runs
only the last phase, the same functions the converter calls (``mlir_quantize`` for int8, the
calibrator's ``QuantizeModel`` for 16-bit activations), then the same buffer deduplication and
conversion metadata. tests/variants/test_calibrated.py checks the bytes against the converter.

Anything this path does not cover (float16, dynamic range, a converter option it does not know)
goes through ``converter.convert()`` as before.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
METADATA = "CONVERSION_METADATA"


@dataclass(frozen=True)
class Mode:
    """The converter's post-training integer settings, as its QuantizationMode derives them."""

    activations: str  # "int8" | "int16"
    io_type: str  # "float32" | "int8" | "uint8" | "int16"
    allow_float: bool


def mode(converter: Any) -> Mode | None:
    """The integer mode the converter is configured for, or None (not calibrated integer
    quantization, or an option this path does not reproduce: then the converter runs)."""
    tf = _tf()
    ops, target = tf.lite.OpsSet, converter.target_spec
    supported = set(target.supported_ops)
    if (converter.representative_dataset is None
            or list(converter.optimizations) != [tf.lite.Optimize.DEFAULT]
            or target.supported_types or converter._experimental_calibrate_only  # noqa: SLF001
            or not converter.experimental_new_quantizer):
        return None
    in_type = converter.inference_input_type or tf.float32
    out_type = converter.inference_output_type or tf.float32
    if in_type != out_type:
        return None
    int16 = ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
    if int16 in supported:
        if not supported <= {int16, ops.TFLITE_BUILTINS}:
            return None
        return Mode("int16", in_type.name, ops.TFLITE_BUILTINS in supported)
    if supported not in ({ops.TFLITE_BUILTINS}, {ops.TFLITE_BUILTINS_INT8}):
        return None
    return Mode("int8", in_type.name, supported != {ops.TFLITE_BUILTINS_INT8})


def _tf() -> Any:
    from quantflow.core.tfenv import tf_modules

    return tf_modules()[0]


def _strip_metadata(model: bytes) -> bytes | None:
    """The float model as the converter has it before it stamps its conversion metadata; None
    for a model this path does not reproduce: one with variable tensors (an LSTM's states; the
    converter's own output for those is not even the same on its first and second run in a
    process) or with constants sharing one buffer (the export deduplicates equal constants,
    the converter quantizes before it does): then the converter runs itself.
    """
    from tensorflow.lite.tools import flatbuffer_utils as fb

    obj = fb.convert_bytearray_to_object(model)
    used = [t.buffer for g in obj.subgraphs for t in g.tensors
            if t.buffer and obj.buffers[t.buffer].data is not None]
    if len(used) != len(set(used)) or any(t.isVariable for g in obj.subgraphs for t in g.tensors):
        return None
    keep = [m for m in obj.metadata or [] if m.name.decode() != METADATA]
    dropped = {m.buffer for m in obj.metadata or []} - {m.buffer for m in keep}
    if dropped != {len(obj.buffers) - 1}:
        return None
    obj.metadata, obj.buffers = keep, obj.buffers[:-1]
    return bytes(fb.convert_object_to_bytearray(obj))


def key(float_tflite: Path, calibration: Path) -> str:
    """What the calibrated model depends on: the float model, the samples, TensorFlow."""
    from quantflow.core.io import sha256_file

    parts = (sha256_file(float_tflite), sha256_file(calibration), _tf().__version__)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def calibrated(float_tflite: Path, calibration: Path, folder: Path, dataset: Any) \
        -> bytes | None:
    """The calibrated float model, made by the first kind that needs it and reused after
    (None: this model cannot share one, see ``_strip_metadata``).

    Parallel variants of one pipeline may ask at the same time: a lock file makes the others
    wait for the one calibrating instead of calibrating again. Older keys are removed.
    """
    import fcntl

    from quantflow.core import io

    float_model = _strip_metadata(float_tflite.read_bytes())
    if float_model is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key(float_tflite, calibration)}.tflite"
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            log.info("calibration: reusing %s", path.name)
            return path.read_bytes()
        from tensorflow.lite.python.optimize import calibrator

        model = calibrator.add_intermediate_tensors(float_model)
        data = calibrator.Calibrator(model).calibrate(dataset)
        io.write_bytes(path, data)
        for old in folder.glob("*.tflite"):
            if old != path:
                old.unlink(missing_ok=True)
        log.info("calibration: calibrated once into %s", path.name)
        return data


def quantize(calibrated_model: bytes, m: Mode, converter: Any, meta: Any) -> bytes:
    """The converter's last phase on the calibrated model: the same calls with the same
    arguments as ``TFLiteConverter._quantize`` and ``_optimize_tflite_model`` make."""
    from tensorflow.lite.python import lite
    from tensorflow.lite.python.convert import deduplicate_readonly_buffers, mlir_quantize
    from tensorflow.lite.python.optimize import calibrator

    tf = _tf()
    io_type = getattr(tf, m.io_type)
    per_channel_off = converter._experimental_disable_per_channel  # noqa: SLF001
    dense_off = converter._experimental_disable_per_channel_quantization_for_dense_layers  # noqa: SLF001
    if m.activations == "int8":
        model = mlir_quantize(calibrated_model, per_channel_off, input_data_type=io_type,
                              output_data_type=io_type,
                              disable_per_channel_for_dense_layers=dense_off)
    else:
        import numpy as np

        def code(dtype: Any) -> int:
            return np.dtype(dtype.as_numpy_dtype()).num

        wrapper = calibrator.Calibrator(calibrated_model)._calibrator  # noqa: SLF001
        model = wrapper.QuantizeModel(code(io_type), code(io_type), m.allow_float,
                                      code(tf.int16), code(tf.int64), per_channel_off, dense_off)
        model = lite._modify_model_io_type(model, io_type, io_type)  # noqa: SLF001
    return _stamp(deduplicate_readonly_buffers(model), m, meta)


def _float_metadata(float_model: bytes) -> Any:
    """The float conversion's metadata entry (environment, options), or None."""
    from tensorflow.lite.python import conversion_metadata_schema_py_generated as meta_fb
    from tensorflow.lite.tools import flatbuffer_utils as fb

    obj = fb.convert_bytearray_to_object(float_model)
    entry = next((e for e in obj.metadata or [] if e.name.decode() == METADATA), None)
    if entry is None:  # converted with exclude_conversion_metadata
        return None
    return meta_fb.ConversionMetadataT.InitFromObj(
        meta_fb.ConversionMetadata.GetRootAs(bytes(obj.buffers[entry.buffer].data), 0))


def _stamp(model: bytes, m: Mode, meta: Any) -> bytes:
    """Conversion metadata as the converter writes it: the float conversion's entry with this
    mode's optimization and the quantized model's own hash."""
    from tensorflow.lite.python import conversion_metadata_schema_py_generated as meta_fb
    from tensorflow.lite.python import util
    from tensorflow.lite.tools import flatbuffer_utils as fb

    if meta is None:
        return model
    obj = fb.convert_bytearray_to_object(model)
    modes = meta_fb.ModelOptimizationMode
    meta.options.modelOptimizationModes = [
        modes.PTQ_FULL_INTEGER if m.activations == "int8" else modes.PTQ_INT16,
        *util.get_sparsity_modes(obj)]
    meta.environment.modelHash = util.get_model_hash(obj)
    return bytes(fb.convert_object_to_bytearray(util.populate_conversion_metadata(obj, meta)))


def convert(converter: Any, float_tflite: Path | None, calibration: Path | None,
            folder: Path | None) -> bytes | None:
    """The quantized model through the shared calibration, or None when the converter must
    run itself (not an integer kind, or no float model / calibration cache to share)."""
    m = mode(converter)
    if m is None or float_tflite is None or calibration is None or folder is None:
        return None
    if not float_tflite.exists():
        return None
    data = calibrated(float_tflite, calibration, folder, converter.representative_dataset)
    if data is None:
        log.info("calibration: this model's constants share buffers; each kind calibrates")
        return None
    return quantize(data, m, converter, _float_metadata(float_tflite.read_bytes()))
