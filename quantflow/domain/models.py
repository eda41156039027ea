"""What every model source and every training loop shares: fit checks and the optimizer.

The sources themselves (built-in architectures, a user's model file) live one per module in
``quantflow.sources``.
"""

from __future__ import annotations

from typing import Any

from quantflow.core.errors import ModelError
from quantflow.core.specbase import TrainSpec
from quantflow.core.tfenv import tf_modules


def check_shapes(input_shape: tuple[Any, ...], output_shape: tuple[Any, ...],
                 sample_shape: tuple[int, ...], num_classes: int) -> None:
    """Fail before anything is spent when the data cannot be fed to the model (shapes
    include the batch dimension; None or -1 is any size), or labels have no output."""
    expected = tuple(None if d in (None, -1) else int(d) for d in input_shape[1:])
    if len(expected) != len(sample_shape) or any(
        e is not None and e != s for e, s in zip(expected, sample_shape, strict=False)
    ):
        raise ModelError(f"the model expects inputs of shape {expected}, the dataset has "
                         f"{sample_shape}")
    outputs = output_shape[-1] if len(output_shape) > 1 else None
    if outputs not in (None, -1) and int(outputs) < num_classes:
        raise ModelError(f"the model has {outputs} outputs but the labels go up to "
                         f"{num_classes - 1}; labels must be 0..{int(outputs) - 1}")


Shapes = tuple[int, ...] | dict[str, tuple[int, ...]]


def check_inputs(model_inputs: dict[str, tuple[Any, ...]], sample: Shapes) -> None:
    """Every model input (by name, shapes with the batch dimension) must have data of its
    shape; a single input takes the dataset's one array whatever its name."""
    if not isinstance(sample, dict):
        if len(model_inputs) != 1:
            raise ModelError(f"the model has {len(model_inputs)} inputs "
                             f"({', '.join(sorted(model_inputs))}); map each to an array "
                             "with the npz source's x_key: {input name: array key}")
        check_shapes(next(iter(model_inputs.values())), (None,), sample, 0)
        return
    if set(model_inputs) != set(sample):
        raise ModelError(f"the model's inputs are {', '.join(sorted(model_inputs))}; the "
                         f"dataset maps {', '.join(sorted(sample))} (dataset.x_key)")
    for name, shape in model_inputs.items():
        try:
            check_shapes(shape, (None,), sample[name], 0)
        except ModelError as exc:
            raise ModelError(f"input {name!r}: {exc}") from None


def check_trainable(sample: Shapes) -> None:
    """A model quantflow builds and trains (a built-in architecture or a builder) takes one
    input array; several named inputs need the user's own model."""
    if isinstance(sample, dict):
        raise ModelError(f"the built-in architectures take one input; the dataset has "
                         f"{', '.join(sorted(sample))}: bring the model with `path:`")


def check_input_shape(keras_model: Any, sample_shape: Shapes) -> None:
    """Fail before training when the data cannot be fed to the model."""
    shapes = keras_model.input_shape
    shapes = shapes if isinstance(shapes, list) else [shapes]
    names = getattr(keras_model, "input_names", None) or [
        t.name.split(":")[0] for t in keras_model.inputs]  # Keras 3 has no input_names
    check_inputs(dict(zip(names, map(tuple, shapes), strict=True)), sample_shape)


def check_classes(keras_model: Any, num_classes: int) -> None:
    """A user's model must have an output for every label of the data (checked when it has
    one output; with several, evaluation names the one holding the prediction)."""
    shape = keras_model.output_shape
    if isinstance(shape, tuple):
        check_shapes((None,), shape, (), num_classes)


def ends_in_softmax(keras_model: Any) -> bool:
    """Whether the model outputs probabilities: its last layer is a Softmax layer or has a
    softmax activation (Dense(..., activation="softmax"), Activation("softmax"))."""
    last = keras_model.layers[-1] if getattr(keras_model, "layers", None) else None
    if last is None:
        return False
    if type(last).__name__ == "Softmax":
        return True
    activation = getattr(last, "activation", None)
    return getattr(activation, "__name__", "") == "softmax"


def classification_loss(keras_model: Any) -> Any:
    """The loss that matches the model's output: logits unless it ends in softmax. Compiling
    a softmax model with from_logits=True trains on a wrong loss and makes tf_keras warn."""
    _, keras = tf_modules()
    return keras.losses.SparseCategoricalCrossentropy(from_logits=not ends_in_softmax(keras_model))


def ends_in_sigmoid(keras_model: Any) -> bool:
    """Whether a binary model outputs a probability (its last layer's activation is sigmoid)."""
    last = keras_model.layers[-1] if getattr(keras_model, "layers", None) else None
    return getattr(getattr(last, "activation", None), "__name__", "") == "sigmoid"


def output_units(task: str, num_classes: int, y: Any) -> int:
    """How many outputs the model needs: one per class, one sigmoid for a binary task, the
    targets' width for a regression."""
    if task == "classification":
        return num_classes
    if task == "binary":
        return 1
    width = 1
    for d in y.shape[1:]:
        width *= int(d)
    return width


def task_loss(task: str, keras_model: Any) -> tuple[Any, list[Any]]:
    """(loss, metrics) to compile a model of ``task`` with: cross-entropy matching the
    output (logits or probabilities), mean squared error for a regression."""
    _, keras = tf_modules()
    if task == "binary":
        logits = not ends_in_sigmoid(keras_model)
        return (keras.losses.BinaryCrossentropy(from_logits=logits),
                [keras.metrics.BinaryAccuracy(threshold=0.0 if logits else 0.5)])
    if task == "regression":
        return keras.losses.MeanSquaredError(), ["mae"]
    return classification_loss(keras_model), ["accuracy"]


def optimizer(train: TrainSpec, learning_rate: float | None = None) -> Any:
    """A fresh tf_keras optimizer of the spec's kind: training and QAT's fine-tuning both use
    it, so `train.optimizer` means the same thing in both (QAT may set its own rate)."""
    _, keras = tf_modules()
    classes = {
        "adam": keras.optimizers.Adam,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }
    return classes[train.optimizer](learning_rate=learning_rate or train.learning_rate)
