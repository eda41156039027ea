"""Quantization-aware training: fine-tune with fake-quant nodes (tfmot), then convert to int8.

The model learns weights that survive quantization, which usually recovers most of the
accuracy post-training int8 loses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quantflow.core import io
from quantflow.core.spec import QatVariant
from quantflow.core.tfenv import tf_modules
from quantflow.variants import ConvertInputs
from quantflow.variants._common import (
    keras_converter,
    load_model,
    make_optimizer,
    representative_dataset,
    set_io_type,
)


def fine_tune(inputs: ConvertInputs, variant: QatVariant) -> Any:
    """Wrap the trained model with quantize_model and fit it on the training split.

    Seeded with the training seed so two runs of the same spec give the same weights.
    """
    import tensorflow_model_optimization as tfmot

    _, keras = tf_modules()
    keras.utils.set_random_seed(inputs.train.seed)
    data = io.load_dataset(inputs.dataset)
    x, y = data.x_train, data.y_train
    model = tfmot.quantization.keras.quantize_model(load_model(inputs))
    model.compile(
        optimizer=make_optimizer(inputs.train, variant.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x, y, batch_size=inputs.train.batch_size, epochs=variant.epochs, verbose=0)
    return model


def convert(inputs: ConvertInputs, variant: QatVariant, out: Path) -> Path:
    """The fake-quant ranges come from training; the representative dataset is only needed to
    quantize the model's interface when integer I/O is asked for."""
    tf, _ = tf_modules()
    converter = keras_converter(fine_tune(inputs, variant))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant.io_type != "float32":
        converter.representative_dataset = representative_dataset(inputs.calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        set_io_type(converter, variant.io_type)
    return io.write_bytes(out, converter.convert())
