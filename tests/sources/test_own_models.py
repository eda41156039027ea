"""Users' own models (`path:`): a Keras 3 .keras file, a Keras 3 export(), a plain tf.Module
SavedModel with its own signature and a float .tflite. Each is detected from the file, the
kinds that apply are converted from export's one SavedModel and evaluated with LiteRT (the
steps called directly), and the kinds that do not are refused at validate time with why."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from quantflow.core.errors import SpecError
from quantflow.core.request import load_request
from quantflow.core.results import VariantMetrics
from quantflow.sources._formats import detect
from tests.tiny import tiny_spec, write_workspace

CONVERTERS = [{"name": "dr", "kind": "dynamic_range"}, {"name": "i8", "kind": "int8"}]


def workspace(root: Path, model: dict, variants: list[dict]) -> Path:
    return write_workspace(root, tiny_spec(model=model, variants=variants)).parent


def fake_keras3(path: Path) -> Path:
    """A .keras zip whose metadata says Keras 3: enough for detection and validate."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        zf.writestr("config.json", "{}")
    return path


def test_the_format_is_told_from_the_file(tmp_path: Path) -> None:
    assert detect(fake_keras3(tmp_path / "k3.keras")) == "keras3"
    assert detect(tmp_path / "missing.keras") == "keras2"
    assert detect(tmp_path / "m.h5") == "keras2"
    assert detect(tmp_path / "m.tflite") == "tflite"
    (tmp_path / "sm").mkdir()
    assert detect(tmp_path / "sm") == "saved_model"
    (tmp_path / "sm" / "keras_metadata.pb").touch()
    assert detect(tmp_path / "sm") == "keras2"


def test_qat_on_a_keras3_file_is_refused_naming_keras3_and_what_applies(tmp_path: Path) -> None:
    fake_keras3(tmp_path / "m.keras")
    ws = workspace(tmp_path, {"path": "m.keras"}, [*CONVERTERS, {"name": "q", "kind": "qat"}])
    with pytest.raises(SpecError) as err:
        load_request(ws, "pipelines.yaml", [], "tiny")
    msg = str(err.value)
    assert "variant 'q' (kind qat) needs a Keras 2 (tf_keras) model" in msg
    assert "model.path 'm.keras' is a Keras 3 model" in msg
    assert "Kinds that apply to this model: dynamic_range, float16, int8_float_fallback, " \
           "int8, int16x8" in msg
    # forcing the format is the user's way out of a wrong guess
    ws = workspace(tmp_path, {"path": "m.keras", "format": "keras2"},
                   [{"name": "q", "kind": "qat"}])
    assert load_request(ws, "pipelines.yaml", [], "tiny").pipeline.model.kind == "keras2"


def test_every_converter_kind_is_refused_for_a_tflite(tmp_path: Path) -> None:
    (tmp_path / "m.tflite").write_bytes(b"TFL3")
    ws = workspace(tmp_path, {"path": "m.tflite"}, [{"name": "i8", "kind": "int8"}])
    with pytest.raises(SpecError, match="variant 'i8' \\(kind int8\\) needs a SavedModel or "
                                        "Keras model; model.path 'm.tflite' is a .tflite file"):
        load_request(ws, "pipelines.yaml", [], "tiny")


def test_signature_is_only_for_savedmodels(tmp_path: Path) -> None:
    fake_keras3(tmp_path / "m.keras")
    ws = workspace(tmp_path, {"path": "m.keras", "signature": "predict"}, CONVERTERS)
    with pytest.raises(SpecError, match="model.signature applies to SavedModel directories"):
        load_request(ws, "pipelines.yaml", [], "tiny")


def run_steps(ws: Path, variants: list[str]) -> dict[str, VariantMetrics]:
    """prepare -> train -> export -> quantize, called directly (no Prefect server)."""
    from quantflow.steps import export, prepare, quantize, train

    ctx = load_request(ws, "pipelines.yaml", [], "tiny").step
    prepare.run(ctx)
    train.run(ctx)
    out = {"float": export.run(ctx)}
    out |= {v: quantize.run(ctx, v) for v in variants}
    return out


def assert_converted(results: dict[str, VariantMetrics]) -> None:
    for name, m in results.items():
        assert m.status == "ok", (name, m.error)
        assert m.size_bytes > 0 and 0 <= m.accuracy <= 1, name


def keras3_model(softmax: bool = False):
    import keras

    from quantflow.core.tfenv import tf_modules

    tf_modules()  # TF_USE_LEGACY_KERAS first; `keras` is Keras 3 all the same
    return keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(),
                             keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(10, activation="softmax" if softmax else None)])


@pytest.mark.slow
def test_a_keras3_file_is_loaded_exported_and_converted(tmp_path: Path) -> None:
    keras3_model().save(tmp_path / "m.keras")
    ws = workspace(tmp_path, {"path": "m.keras"}, CONVERTERS)
    assert load_request(ws, "pipelines.yaml", [], "tiny").pipeline.model.kind == "keras3"
    results = run_steps(ws, ["dr", "i8"])
    assert_converted(results)
    assert (ws / "artifacts/tiny/export/saved_model/saved_model.pb").exists()


@pytest.mark.slow
def test_a_keras3_export_savedmodel_is_converted_without_retracing(tmp_path: Path) -> None:
    keras3_model(softmax=True).export(str(tmp_path / "exported"), verbose=False)
    ws = workspace(tmp_path, {"path": "exported"}, CONVERTERS)
    assert load_request(ws, "pipelines.yaml", [], "tiny").pipeline.model.kind == "saved_model"
    results = run_steps(ws, ["dr", "i8"])
    assert_converted(results)
    # copied as it is, not re-traced: the same graph file
    pb = "artifacts/tiny/export/saved_model/saved_model.pb"
    assert (ws / pb).read_bytes() == (tmp_path / "exported/saved_model.pb").read_bytes()


@pytest.mark.slow
def test_a_tf_module_savedmodel_with_its_own_signature(tmp_path: Path) -> None:
    from quantflow.core.tfenv import tf_modules

    tf, _ = tf_modules()
    module = tf.Module()
    # 64x32 weights: above the 1,024 elements below which dynamic range keeps them float
    module.w1 = tf.Variable(tf.random.stateless_normal((64, 32), seed=(1, 2)))
    module.w2 = tf.Variable(tf.random.stateless_normal((32, 10), seed=(3, 4)))

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8], tf.float32)])
    def predict(x):
        hidden = tf.nn.relu(tf.matmul(tf.reshape(x, (-1, 64)), module.w1))
        return {"logits": tf.matmul(hidden, module.w2)}

    module.predict = predict
    tf.saved_model.save(module, str(tmp_path / "raw"), signatures={"predict": predict})
    ws = workspace(tmp_path, {"path": "raw"}, CONVERTERS)
    from quantflow.core.errors import ModelError
    from quantflow.steps import prepare, train

    ctx = load_request(ws, "pipelines.yaml", [], "tiny").step
    prepare.run(ctx)
    with pytest.raises(ModelError, match="no signature 'serving_default'; it has predict"):
        train.run(ctx)
    ws = workspace(tmp_path, {"path": "raw", "signature": "predict"}, CONVERTERS)
    assert_converted(run_steps(ws, ["dr", "i8"]))


@pytest.mark.slow
def test_a_float_tflite_is_the_baseline_as_it_is(tmp_path: Path) -> None:
    from quantflow.steps.export import evaluate_baseline, export_model
    from quantflow.steps.prepare import run as prepare
    from quantflow.steps.train import train_model

    model = keras3_model()
    model.export(str(tmp_path / "sm"), verbose=False)
    from quantflow.domain.savedmodel import converter

    (tmp_path / "m.tflite").write_bytes(converter(tmp_path / "sm").convert())
    ctx = load_request(workspace(tmp_path, tiny_spec()["pipelines"]["tiny"]["model"],
                                 CONVERTERS), "pipelines.yaml", [], "tiny").step
    prepare(ctx)  # the data; the spec of a .tflite model cannot validate with converter kinds
    from quantflow.sources.path import PathModel

    spec = PathModel.model_validate({"path": "m.tflite"}, context={"workspace": tmp_path})
    trained = tmp_path / "train" / spec.trained_name()
    info = train_model(ctx.paths.dataset, spec, ctx.pipeline.train, trained, tmp_path)
    assert not info.trained and trained.read_bytes() == (tmp_path / "m.tflite").read_bytes()
    export_model(trained, tmp_path / "export/saved_model", tmp_path / "export/float.tflite")
    assert not (tmp_path / "export/saved_model").exists()
    assert (tmp_path / "export/float.tflite").read_bytes() == trained.read_bytes()
    metrics = evaluate_baseline(tmp_path / "export/float.tflite", ctx.paths.dataset,
                                ctx.pipeline.evaluation, tmp_path / "export/metrics.json")
    assert metrics.status == "ok" and metrics.size_bytes == trained.stat().st_size
