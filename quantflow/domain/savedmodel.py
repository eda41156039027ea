"""The one SavedModel every conversion starts from, written once by the export step.

Converting ``from_saved_model`` of one folder, instead of re-tracing a Keras model in every
variant, means each variant converts the same graph the float baseline was converted from,
and a source that already is a SavedModel is never re-traced at all.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from quantflow.core import io
from quantflow.core.errors import ModelError
from quantflow.core.tfenv import tf_modules
from quantflow.sources._formats import detect


def _fill(trained: Path) -> Any:
    """How to write the SavedModel of ``trained`` into a (temp) folder, by its format."""
    fmt = detect(trained)
    if fmt == "saved_model":  # already one: copied, not re-traced
        return lambda tmp: shutil.copytree(trained, tmp, dirs_exist_ok=True)
    if fmt == "keras3":  # Keras 3 writes its own SavedModel (serve + serving_default)
        import keras

        model = keras.saving.load_model(trained, compile=False, safe_mode=True)
        return lambda tmp: model.export(str(tmp), verbose=False)
    tf, tf_keras = tf_modules()
    model = tf_keras.models.load_model(trained, compile=False, safe_mode=True)
    return lambda tmp: tf.saved_model.save(model, str(tmp))


def write_saved_model(trained: Path, out: Path) -> Path | None:
    """Write the SavedModel of train's output to ``out`` (atomically); None for a .tflite,
    from which no SavedModel can be made."""
    if detect(trained) == "tflite":
        return None
    io.replace_dir(out, _fill(trained))
    return out


def signature_def(saved_model: Path, signature: str) -> Any | None:
    """The signature's SignatureDef read from saved_model.pb, without loading the model (a
    load restores every variable and traces its functions: seconds for a MobileNetV2)."""
    from tensorflow.python.saved_model import loader_impl

    for graph in loader_impl.parse_saved_model(str(saved_model)).meta_graphs:
        if "serve" in graph.meta_info_def.tags and signature in graph.signature_def:
            return graph.signature_def[signature]
    return None


def converter(saved_model: Path, signature: str = "serving_default") -> Any:
    """A TFLiteConverter for one signature of the SavedModel: the object `from_saved_model`
    returns for one signature key, made without the model load it does only to list the
    signatures (the conversion itself reads the folder); `from_saved_model` where that does
    not apply (its errors for a missing signature included)."""
    tf, _ = tf_modules()
    from tensorflow.lite.python import lite

    if signature_def(saved_model, signature) is not None:
        # As from_saved_model records it: the model type goes into the conversion metadata.
        lite.TFLiteConverterBase._set_original_model_type(  # noqa: SLF001
            lite.conversion_metadata_fb.ModelType.TF_SAVED_MODEL)
        made = lite.TFLiteSavedModelConverterV2(str(saved_model), {"serve"}, [signature])
        if made.saved_model_dir:
            return made
    return tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=[signature])


RNN_BATCH = ("the model's RNN needs a static batch size: build its Input with batch_size=1 "
             "(or set `unroll=True` on the RNN layer)")


def convert(converter: Any) -> bytes:
    """Run the converter; an RNN over a dynamic batch fails deep in the converter with a
    TensorList lowering message, which is replaced by what to change in the model."""
    try:
        return converter.convert()
    except Exception as exc:
        if "TensorList" in str(exc) or "tensor list" in str(exc):
            raise ModelError(RNN_BATCH) from None
        raise


LOOP_OPS = ("While", "StatelessWhile")


def has_loop(saved_model: Path) -> bool:
    """Whether the SavedModel's graph holds a While loop: what a GRU/LSTM/RNN layer (not
    unrolled) becomes. Read from saved_model.pb alone (the graph, not the weights)."""
    tf_modules()  # TensorFlow's protobuf classes come with it
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((Path(saved_model) / "saved_model.pb").read_bytes())
    for graph in (m.graph_def for m in proto.meta_graphs):
        nodes = [*graph.node, *(n for f in graph.library.function for n in f.node_def)]
        if any(n.op in LOOP_OPS for n in nodes):
            return True
    return False


def refuse_calibrated_loop(saved_model: Path, kind: str) -> None:
    """Calibrated integer quantization of an RNN loop kills the process inside the TF 2.21
    converter (a segfault, no exception to record), so it is refused before converting."""
    if saved_model.is_dir() and has_loop(saved_model):
        raise ModelError(
            f"kind {kind} is not available for this model: it has an RNN loop (a GRU/LSTM/RNN "
            "layer, a While loop in the SavedModel), and calibrated integer conversion of one "
            "crashes the TF 2.21 converter; use dynamic_range or float16, or build the RNN "
            "layer with unroll=True")
