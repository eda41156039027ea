"""The `path` source, users' model files: anything that is not a Keras model is a ModelError with
a clear message, loading never runs Python code stored in the file (safe mode for every format),
and a model that does not fit the data is refused before anything is spent on it."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from quantflow.core.errors import ModelError
from quantflow.core.tfenv import tf_modules
from quantflow.domain.models import check_classes, check_input_shape
from quantflow.sources.path import PathModel, build, load


def load_path(ws: Path, name: str):
    return load(PathModel.model_validate({"path": name}, context={"workspace": ws}), ws)


@pytest.mark.parametrize("name, content", [
    ("model.keras", b"\x00\x01definitely not a model" * 50),
    ("model.h5", b"\x89HDF\r\n\x1a\n but then nothing"),
    ("notes.txt", b"hello"),
    ("empty.keras", b""),
])
def test_a_file_that_is_not_a_model(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ModelError, match=rf"^model.path '{name}': not a loadable Keras/"
                                         "SavedModel model \\("):
        load_path(tmp_path, name)


def test_a_zip_or_folder_that_is_not_a_model(tmp_path):
    with zipfile.ZipFile(tmp_path / "fake.keras", "w") as zf:
        zf.writestr("config.json", "{\"class_name\": \"Nope\"}")
    with pytest.raises(ModelError, match="model.path 'fake.keras': not a loadable"):
        load_path(tmp_path, "fake.keras")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "saved_model.pb").write_bytes(b"junk")
    with pytest.raises(ModelError, match="model.path 'folder': not a loadable"):
        load_path(tmp_path, "folder")


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelError, match="model.path 'gone.keras': not found"):
        load_path(tmp_path, "gone.keras")


def test_a_file_that_is_not_a_tflite(tmp_path):
    from quantflow.sources._loaders import load_checked

    (tmp_path / "model.tflite").write_bytes(b"TFL3" + b"\x00" * 64)
    with pytest.raises(ModelError, match="^model.path 'model.tflite': not a loadable .tflite"):
        load_checked("model.tflite", "tflite", "serving_default", tmp_path, (8, 8), 10)


@pytest.fixture(scope="module")
def lambda_models(tmp_path_factory) -> tuple[Path, Path]:
    """One model with a Lambda whose Python code touches a marker file, in three formats."""
    _, keras = tf_modules()
    root = tmp_path_factory.mktemp("lambda")
    marker = root / "code-ran"
    fn = eval(f"lambda x: x + 0.0 * len(open({str(marker)!r}, 'a').name)")  # noqa: S307
    model = keras.Sequential([keras.layers.InputLayer(input_shape=(4,)),
                              keras.layers.Lambda(fn), keras.layers.Dense(3)])
    model.save(root / "m.keras")
    model.save(root / "m.h5")
    model.save(root / "sm", save_format="tf")
    return root, marker


@pytest.mark.parametrize("name", ["m.keras", "m.h5", "sm"])
def test_lambda_code_is_never_run_on_load(lambda_models, name):
    root, marker = lambda_models
    marker.unlink(missing_ok=True)
    try:
        model = load_path(root, name)
    except ModelError as exc:
        assert "Lambda layer with Python code" in str(exc)
    else:  # a SavedModel may revive the traced graph instead: fine, as long as no code ran
        assert name == "sm", f"{name} loaded a Python lambda"
        assert model is not None
    assert not marker.exists(), f"loading {name} ran Python code from the file"


def test_a_real_model_loads(tmp_path):
    _, keras = tf_modules()
    model = keras.Sequential([keras.layers.InputLayer(input_shape=(8, 8)),
                              keras.layers.Flatten(), keras.layers.Dense(10)])
    for name in ("ok.keras", "ok.h5"):
        model.save(tmp_path / name)
        assert load_path(tmp_path, name).input_shape == (None, 8, 8)


def test_user_model_refuses_data_of_another_shape(tmp_path):
    """model: {path: ...} is not rebuilt for the data, so the shapes must agree up front."""
    _, keras = tf_modules()
    model = keras.Sequential([keras.layers.InputLayer(input_shape=(28, 28)),
                              keras.layers.Flatten(), keras.layers.Dense(10)])
    model.save(tmp_path / "user.keras")
    loaded = load(PathModel(path="user.keras"), tmp_path)
    check_input_shape(loaded, (28, 28))
    with pytest.raises(ModelError, match=r"expects inputs of shape \(28, 28\), the dataset has "
                                         r"\(8, 8\)"):
        check_input_shape(loaded, (8, 8))
    with pytest.raises(ModelError, match=r"expects inputs of shape \(28, 28\), the dataset has "
                                         r"\(784,\)"):
        check_input_shape(loaded, (784,))
    check_classes(loaded, 10)
    with pytest.raises(ModelError, match="10 outputs but the labels go up to 11"):
        check_classes(loaded, 12)


def test_build_loads_and_checks_against_the_data(tmp_path):
    """What the train step calls: the user's model as it is, or a ModelError up front."""
    _, keras = tf_modules()
    model = keras.Sequential([keras.layers.InputLayer(input_shape=(8, 8)),
                              keras.layers.Flatten(), keras.layers.Dense(10)])
    model.save(tmp_path / "user.keras")
    spec = PathModel(path="user.keras")
    assert build(spec, (8, 8), 10, tmp_path).input_shape == (None, 8, 8)
    with pytest.raises(ModelError, match="expects inputs of shape"):
        build(spec, (28, 28), 10, tmp_path)
    with pytest.raises(ModelError, match="10 outputs but the labels go up to 11"):
        build(spec, (8, 8), 12, tmp_path)
    assert spec.files() == {"path": "user.keras"} and not spec.trains
