"""`model: {builder: ...}`: a team's own architecture in a workspace module, trained and
quantized like the built-ins (QAT too); every way a builder can be wrong is one ModelError
naming it; validate finds the module's file without running it; DVC tracks it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from quantflow.core.errors import ModelError, SpecError
from quantflow.core.request import load_request
from tests.tiny import tiny_spec, write_workspace

NET = '''
import tf_keras as keras


def small_net(input_shape, num_classes, width=16, dropout=0.0):
    return keras.Sequential([
        keras.layers.InputLayer(input_shape=input_shape),
        keras.layers.Flatten(),
        keras.layers.Dense(width, activation="relu"),
        keras.layers.Dropout(dropout),
        keras.layers.Dense(num_classes),
    ])
'''

VARIANTS = [{"name": "dr", "kind": "dynamic_range"}, {"name": "i8", "kind": "int8"},
            {"name": "qat", "kind": "qat", "epochs": 1}]


def workspace(root: Path, code: str = NET, builder: str = "nets.small:small_net",
              params: dict | None = None, variants: list[dict] | None = None) -> Path:
    (root / "nets").mkdir(parents=True, exist_ok=True)
    (root / "nets" / "__init__.py").write_text("")
    (root / "nets" / "small.py").write_text(code)
    model = {"builder": builder, "params": params if params is not None else {"width": 24}}
    spec = tiny_spec(model=model, variants=variants or VARIANTS[:1])
    return write_workspace(root, spec).parent


def test_validate_finds_the_file_without_running_it(tmp_path: Path) -> None:
    ws = workspace(tmp_path, code="raise SystemExit('imported at validate time')\n")
    model = load_request(ws, "pipelines.yaml", [], "tiny").pipeline.model
    assert model.files() == {"builder": "nets/small.py"}
    assert "nets.small" not in sys.modules
    assert model.provides() == frozenset({"keras2", "saved_model"})


def test_a_missing_module_file_fails_validate(tmp_path: Path) -> None:
    ws = workspace(tmp_path, builder="nets.big:net")
    with pytest.raises(SpecError, match=r"model.builder: no such file or directory "
                                        r"'nets/big.py'"):
        load_request(ws, "pipelines.yaml", [], "tiny")


@pytest.mark.parametrize("builder, params, message", [
    ("nets/small.py:net", {}, "write `package.module:function`"),
    ("nets.small", {}, "write `package.module:function`"),
    ("nets.small:small_net", {"num_classes": 3}, "model.params may not set num_classes"),
])
def test_bad_builder_keys_fail_validate(tmp_path: Path, builder, params, message) -> None:
    ws = workspace(tmp_path, builder=builder, params=params)
    with pytest.raises(SpecError, match=message):
        load_request(ws, "pipelines.yaml", [], "tiny")


def test_the_module_file_is_a_dep_and_params_are_params_of_train(tmp_path: Path) -> None:
    from quantflow.versioning.dvcgen import pipeline_stages

    ws = workspace(tmp_path)
    spec = load_request(ws, "pipelines.yaml", [], "tiny").spec
    train = next(s for s in pipeline_stages(spec, "tiny") if s.step == "train")
    assert "nets/small.py" in train.deps
    assert "pipelines.tiny.model" in train.params  # builder and params, whole section


BAD = {
    "does not import": ("import no_such_package_xyz\n", "does not import (ModuleNotFoundError"),
    "no function": ("x = 1\n", "nets.small has no 'small_net'"),
    "not callable": ("small_net = 3\n", "'small_net' is a int, not callable"),
    "raises": ("def small_net(s, n, width):\n    raise RuntimeError('boom')\n",
               "raised RuntimeError: boom"),
    "returns a dict": ("def small_net(s, n, width):\n    return {}\n",
                       "returned a dict, not a tf_keras Model"),
    "keras 3": ("import keras\ndef small_net(s, n, width):\n    return keras.Sequential("
                "[keras.Input(s), keras.layers.Flatten(), keras.layers.Dense(n)])\n",
                "returned a Keras 3 model; build it with tf_keras"),
    "wrong outputs": (NET.replace("Dense(num_classes)", "Dense(num_classes + 2)"),
                      "returned a model with 12 outputs per example; the data has 10 classes"),
    "two outputs": ("import tf_keras as k\ndef small_net(s, n, width):\n    i = k.Input(s)\n"
                    "    f = k.layers.Flatten()(i)\n"
                    "    return k.Model(i, [k.layers.Dense(n)(f), k.layers.Dense(n)(f)])\n",
                    "1 inputs and 2 outputs; quantflow needs one of each"),
    "wrong input": ("import tf_keras as k\ndef small_net(s, n, width):\n    return k.Sequential("
                    "[k.Input((64,)), k.layers.Dense(n)])\n",
                    "expects inputs of shape (64,), the dataset has (8, 8)"),
    "lambda": ("import tf_keras as k\ndef small_net(s, n, width):\n    return k.Sequential("
               "[k.Input(s), k.layers.Lambda(lambda t: t * 2), k.layers.Flatten(), "
               "k.layers.Dense(n)])\n", "uses Lambda"),
    "unbuilt": ("import tf_keras as k\ndef small_net(s, n, width):\n    return k.Sequential("
                "[k.layers.Flatten(), k.layers.Dense(n)])\n", "is not built"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_each_bad_builder_is_one_model_error(tmp_path: Path, case: str) -> None:
    from quantflow.sources.builder import build

    code, message = BAD[case]
    ws = workspace(tmp_path, code=code)
    model = load_request(ws, "pipelines.yaml", [], "tiny").pipeline.model
    with pytest.raises(ModelError) as err:
        build(model, (8, 8), 10, ws)
    assert str(err.value).startswith("model.builder 'nets.small:small_net': ")
    assert message in str(err.value)
    assert str(ws) not in sys.path


def test_the_import_is_fresh_per_workspace(tmp_path: Path) -> None:
    """Two workspaces with a module of the same name: each gets its own (tests, deep checks
    of several specs in one process), and an edited file is re-read."""
    from quantflow.sources.builder import build

    one = workspace(tmp_path / "one")
    two = workspace(tmp_path / "two", code=NET.replace("width=16", "width=5"), params={})
    m1 = load_request(one, "pipelines.yaml", [], "tiny").pipeline.model
    m2 = load_request(two, "pipelines.yaml", [], "tiny").pipeline.model
    assert build(m1, (8, 8), 10, one).layers[1].units == 24
    assert build(m2, (8, 8), 10, two).layers[1].units == 5


@pytest.mark.slow
def test_a_builder_is_trained_and_quantized_end_to_end(tmp_path: Path) -> None:
    from quantflow.steps import export, prepare, quantize, train

    ws = workspace(tmp_path, params={"width": 32, "dropout": 0.1}, variants=VARIANTS)
    ctx = load_request(ws, "pipelines.yaml", [], "tiny").step
    prepare.run(ctx)
    info = train.run(ctx)
    assert info.trained and info.params == 64 * 32 + 32 + 32 * 10 + 10
    results = {"float": export.run(ctx)} | {v["name"]: quantize.run(ctx, v["name"])
                                            for v in VARIANTS}
    for name, m in results.items():
        assert m.status == "ok", (name, m.error)
        assert m.accuracy > 0.5, (name, m.accuracy)  # evaluated by LiteRT on the test split
    for name in ("dr", "i8", "qat"):
        assert results[name].size_bytes < results["float"].size_bytes, name
