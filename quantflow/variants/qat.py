"""Quantization-aware training: fine-tune with fake-quant nodes (tfmot), then convert to int8.

The model learns weights that survive quantization, which usually recovers most of the
accuracy post-training int8 loses. tfmot wraps tf_keras layers, so the model source must
provide a Keras 2 model (``requires``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from quantflow.core.specbase import Expected, VariantBase
from quantflow.core.tfenv import tf_modules
from quantflow.domain.models import classification_loss, optimizer
from quantflow.variants import ConvertInputs
from quantflow.variants._common import (
    SAVED_MODEL,
    keras_converter,
    load_model,
    representative_dataset,
    set_io_type,
    write_tflite,
)

# Beyond what every quantize stage uses: an upgrade of these re-runs this kind's stages.
PACKAGES = ("tensorflow-model-optimization",)

class QatVariant(VariantBase):
    kind: Literal["qat"] = Field(description="Quantization-aware training (tfmot), then convert.")
    epochs: int = Field(1, ge=1, le=1000, description="Fine-tuning epochs after quantize_model.")
    learning_rate: float | None = Field(
        None, gt=0, description="Fine-tuning learning rate (default: the training one)."
    )
    io_type: Literal["float32", "int8", "uint8"] = Field("float32", description="I/O type.")

    requires: ClassVar[frozenset[str]] = frozenset({"keras2"}) | SAVED_MODEL
    trains: ClassVar[bool] = True  # its worker gets every core; it starts first
    order: ClassVar[int] = 60

    @property
    def needs_calibration(self) -> bool:
        """The fake-quant ranges come from training; only integer I/O needs calibration."""
        return self.io_type != "float32"

    def promise(self) -> Expected:
        """Int8 weights and the I/O type that was asked for."""
        return Expected(self.io_type, "int8")


def fine_tune(inputs: ConvertInputs, variant: QatVariant) -> Any:
    """Wrap the trained model with quantize_model and fit it on the training split.

    Seeded with the training seed so two runs of the same spec give the same weights.
    """
    import tensorflow_model_optimization as tfmot

    from quantflow.core import io

    _, keras = tf_modules()
    keras.utils.set_random_seed(inputs.train.seed)
    data = io.load_dataset(inputs.dataset)
    x, y = data.x_train, data.y_train
    trained = load_model(inputs)
    model = tfmot.quantization.keras.quantize_model(trained)
    model.compile(
        optimizer=optimizer(inputs.train, variant.learning_rate),
        loss=classification_loss(trained),  # the wrapped model's last layer hides softmax
        metrics=["accuracy"],
    )
    model.fit(x, y, batch_size=inputs.train.batch_size, epochs=variant.epochs, verbose=0)
    return model


def convert(inputs: ConvertInputs, variant: QatVariant, out: Path) -> Path:
    """The fake-quant ranges come from training; the representative dataset is only needed to
    quantize the model's interface when integer I/O is asked for."""
    tf, _ = tf_modules()
    model = fine_tune(inputs, variant)
    with tempfile.TemporaryDirectory(prefix="qat-") as folder:  # read by convert()
        converter = keras_converter(model, Path(folder))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if variant.needs_calibration:
            converter.representative_dataset = representative_dataset(inputs)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            set_io_type(converter, variant.io_type)
        return write_tflite(converter, out)
