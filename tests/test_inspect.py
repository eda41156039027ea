"""The deep check (`validate --deep`, `inspect`, and `run` before Prefect): the model and the
data are loaded, compared, and every problem is one line with exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from quantflow.cli import app
from quantflow.core.errors import Exit
from quantflow.core.request import load_request
from quantflow.domain.inspect import inspect_pipeline, render
from tests.tiny import tiny_spec, write_workspace

ROOT = Path(__file__).resolve().parents[1]


def ws_with(root: Path, **pipeline: object) -> Path:
    return write_workspace(root, tiny_spec(**pipeline)).parent


def check(ws: Path):
    return inspect_pipeline(load_request(ws, "pipelines.yaml", [], "tiny").step)


def test_a_fitting_pipeline_has_no_problem_and_says_what_it_found(tmp_path: Path) -> None:
    found = check(ws_with(tmp_path, variants=[{"name": "q", "kind": "qat"}]))
    assert found.problems == [] and found.classes == 10
    (inp,), (out,) = found.signature.inputs, found.signature.outputs
    assert (inp.shape, inp.dtype, out.shape) == ((None, 8, 8), "float32", (None, 10))
    assert "qat" in [k for k, ok, _ in found.kinds if ok]
    text = "\n".join(render(found))
    assert "600 train + 200 test examples of shape (8, 8) float32, labels 0..9" in text
    assert "kinds that apply: dynamic_range, float16" in text and text.endswith(" s)")
    assert not (tmp_path / "artifacts" / "tiny").exists(), "nothing is written"


def keras2_file(path: Path, shape: tuple[int, ...], outputs: int, dtype: str = "float32") -> str:
    from quantflow.core.tfenv import tf_modules

    _, keras = tf_modules()
    keras.Sequential([keras.Input(shape, dtype=dtype), keras.layers.Flatten(),
                      keras.layers.Dense(outputs)]).save(path)
    return path.name


def test_shape_classes_and_dtype_mismatches_are_each_a_problem(tmp_path: Path) -> None:
    rel = keras2_file(tmp_path / "m.keras", (64,), 6, dtype="int32")
    found = check(ws_with(tmp_path, model={"path": rel}))
    assert found.problems == [
        "model: the model expects inputs of shape (64,), the dataset has (8, 8)",
        "model: the model has 6 outputs but the labels go up to 9; labels must be 0..5",
        f"model: the model's input {found.signature.inputs[0].name!r} is int32; quantflow "
        "feeds it the prepared float32 data; integer token ids stay integer with "
        "dataset.normalize: none"]
    spec = str(tmp_path / "pipelines.yaml")
    result = CliRunner().invoke(app, ["inspect", "tiny", "--spec", spec])
    assert result.exit_code == Exit.SPEC
    assert "PROBLEM model: the model expects inputs of shape (64,)" in result.stdout
    assert "Traceback" not in result.output


def test_several_named_inputs_and_token_ids_are_checked_by_name(tmp_path: Path) -> None:
    from quantflow.core.tfenv import tf_modules

    _, keras = tf_modules()
    a, b = keras.Input((4,), name="image"), keras.Input((3,), dtype="int32", name="tokens")
    h = keras.layers.Concatenate()([a, keras.layers.Flatten()(keras.layers.Embedding(9, 2)(b))])
    keras.Model([a, b], [keras.layers.Dense(1, name="score")(h),
                         keras.layers.Dense(1, name="aux")(h)]).save(tmp_path / "m.keras")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", xa=rng.random((60, 4)), xt=rng.integers(0, 9, (60, 3)),
             y=rng.random(60))
    dataset = {"source": "npz", "path": "d.npz", "train_size": 40, "test_size": 20,
               "x_key": {"image": "xa", "tokens": "xt"}}
    found = check(ws_with(tmp_path, dataset=dataset | {"normalize": {"tokens": "none"}},
                          model={"path": "m.keras"}, calibration={"samples": 10}, gate={},
                          evaluation={"task": "regression", "output": "score"}))
    assert found.problems == []
    assert "examples of inputs image (4,) float32, tokens (3,) int64, float targets" in found.data
    found = check(ws_with(tmp_path, dataset=dataset, model={"path": "m.keras"}, gate={},
                          calibration={"samples": 10}, evaluation={"task": "regression"}))
    assert found.problems == [
        "model: the model has 2 outputs (aux, score); set evaluation.output to the one "
        "holding the prediction",
        "model: the model's input 'tokens' is int32; quantflow feeds it the prepared float32 "
        "data; integer token ids stay integer with dataset.normalize: none"]


def test_a_binary_task_builds_one_output(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).random((50, 8)),
             y=np.arange(50) % 2)
    found = check(ws_with(tmp_path, dataset={"source": "npz", "path": "d.npz", "train_size": 30,
                                             "test_size": 20}, calibration={"samples": 10},
                          evaluation={"task": "binary"}, model={"arch": "mlp"}))
    assert found.problems == [] and found.signature.outputs[0].shape == (None, 1)
    assert "labels 0/1" in found.data


def test_a_missing_input_key_of_the_data_is_a_problem(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((50, 8, 8)), labels=np.arange(50) % 10)
    found = check(ws_with(tmp_path, dataset={"source": "npz", "path": "d.npz", "train_size": 30,
                                             "test_size": 20}, calibration={"samples": 10}))
    assert len(found.problems) == 1 and "missing keys ['y']" in found.problems[0]
    assert found.signature is None, "a model that trains has nothing to be built for"


def test_a_builder_that_raises_is_one_line_and_its_traceback_is_logged(tmp_path: Path) -> None:
    (tmp_path / "net.py").write_text("def make(shape, n):\n    raise ValueError('no such width')\n")
    found = check(ws_with(tmp_path, model={"builder": "net:make"}))
    assert found.problems == ["model: model.builder 'net:make': raised ValueError: no such width"]
    assert "raise ValueError('no such width')" in found.log.read_text()
    assert found.log.parent == tmp_path / "artifacts"


def test_kinds_that_do_not_apply_say_why(tmp_path: Path) -> None:
    from tests.sources.test_own_models import keras3_model

    keras3_model().save(tmp_path / "k3.keras")
    found = check(ws_with(tmp_path, model={"path": "k3.keras"}))
    assert found.problems == []
    assert ("qat", False, "needs a Keras 2 (tf_keras) model; model.path 'k3.keras' is a Keras 3 "
            "model (tfmot's QAT wraps only Keras 2 / tf_keras models)") in found.kinds


def test_validate_deep_exits_2_on_a_problem_and_0_otherwise(tmp_path: Path) -> None:
    good = ws_with(tmp_path / "good") / "pipelines.yaml"
    result = CliRunner().invoke(app, ["validate", "--deep", str(good)])
    assert result.exit_code == Exit.OK, result.output
    assert "valid - tiny" in result.stdout and "input: " in result.stdout
    bad = ws_with(tmp_path / "bad", calibration={"path": "missing.npz"})
    result = CliRunner().invoke(app, ["validate", "--deep", str(bad / "pipelines.yaml")])
    assert result.exit_code == Exit.SPEC and "missing.npz" in result.stderr


def _in_subprocess(code: str, cwd: Path) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_run_refuses_a_bad_model_before_any_flow_runs(tmp_path: Path) -> None:
    """The deep check runs in a warm worker while the server starts: this process imports no
    TensorFlow, no flow runs, and the server and workers are stopped."""
    (tmp_path / "net.py").write_text("x = 1\n")
    ws = ws_with(tmp_path, model={"builder": "net:make"})
    out = _in_subprocess(
        "import sys\nfrom quantflow.cli import app\n"
        "try:\n    app(['run', '--spec', 'pipelines.yaml'])\nexcept SystemExit as e:\n"
        "    print('exit', e.code)\n"
        "import multiprocessing as mp\n"
        "print('tensorflow' in sys.modules, 'flows.quantize' in sys.modules, "
        "len(mp.active_children()))\n", ws)
    assert "tiny: model: model.builder 'net:make': net has no 'make'" in out
    assert "exit 2" in out and out.strip().endswith("False False 0")


def test_an_up_to_date_run_imports_neither_tensorflow_nor_prefect(tmp_path: Path) -> None:
    ws = ws_with(tmp_path)
    out = _in_subprocess(
        "import sys\nfrom quantflow.orchestration import runner\n"
        "from quantflow.orchestration.plan import Plan\n"
        "runner.plan_run = lambda r, force=False: Plan(r, set(), [])\n"
        "from quantflow.cli import app\n"
        "try:\n    app(['run', '--spec', 'pipelines.yaml'])\nexcept SystemExit as e:\n"
        "    print('exit', e.code)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'tf_keras', 'prefect')))\n", ws)
    assert "tiny: up to date" in out and "exit 0" in out and out.strip().endswith("[]")


@pytest.mark.parametrize("stages", [{"gate", "publish"}, {"export"}])
def test_only_pipelines_whose_prepare_or_train_runs_are_checked(tmp_path, monkeypatch,
                                                                stages) -> None:
    from rich.console import Console

    from quantflow.domain import inspect
    from quantflow.orchestration import runner
    from quantflow.orchestration.plan import Plan

    def never(ctx):
        raise AssertionError("checked a pipeline whose prepare and train are up to date")

    monkeypatch.setattr(inspect, "inspect_pipeline", never)
    plan = Plan(load_request(ws_with(tmp_path), "pipelines.yaml", [], "tiny"), stages, [])
    assert runner._checked([plan], Console(), [], None) == [plan]
