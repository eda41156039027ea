"""What `engine:` means to the spec, without converting anything: what a variant requires
follows its engine, the errors name the option that would fit, and dvc.yaml tracks it."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantflow.core.errors import SpecError
from quantflow.core.request import load_request
from quantflow.variants import kinds
from quantflow.variants._engine import EngineVariant
from quantflow.versioning.dvcgen import stage_params
from tests.tiny import tiny_spec, write_workspace

AEQ_KINDS = [k.name for k in kinds().values() if issubclass(k.spec, EngineVariant)]
TFLITE = {"path": "m.tflite"}


def load(tmp_path: Path, variants: list[dict], model: dict | None = None, **pipeline):
    (tmp_path / "m.tflite").write_bytes(b"TFL3")  # detection reads the name only
    spec = tiny_spec(model=model or TFLITE, variants=variants, **pipeline)
    return load_request(write_workspace(tmp_path, spec).parent, "pipelines.yaml", [], "tiny")


def test_the_post_training_kinds_offer_both_engines() -> None:
    assert AEQ_KINDS == ["dynamic_range", "float16", "int8_float_fallback", "int8", "int16x8"]


def test_a_tflite_model_takes_every_aeq_kind_and_auto(tmp_path: Path) -> None:
    variants = [{"name": k, "kind": k, "engine": "ai_edge_quantizer"} for k in AEQ_KINDS]
    request = load(tmp_path, variants + [{"name": "auto", "kind": "auto", "io_type": "uint8"}])
    assert [v.requires for v in request.pipeline.variants] == [frozenset()] * 6
    # read on the class, `requires` stays what the default engine needs (registry, schema)
    assert all(kinds()[k].spec.requires == {"saved_model"} for k in AEQ_KINDS)


def test_the_converter_on_a_tflite_is_refused_naming_the_engine_that_fits(tmp_path) -> None:
    with pytest.raises(SpecError) as err:
        load(tmp_path, [{"name": "i8", "kind": "int8"}])
    msg = str(err.value)
    assert "variant 'i8' (kind int8) needs a SavedModel or Keras model; model.path " \
           "'m.tflite' is a .tflite file" in msg
    assert msg.endswith("Kinds that apply to this model: auto; dynamic_range, float16, "
                        "int8_float_fallback, int8, int16x8 (with engine: ai_edge_quantizer)")


def test_a_kind_without_an_aeq_recipe_refuses_the_option_at_its_key(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"pipelines\.tiny\.variants\[0\]\.engine: unknown key "
                                        r"'engine'; allowed here: epochs, gate, io_type, kind"):
        load(tmp_path, [{"name": "q", "kind": "qat", "engine": "ai_edge_quantizer"}],
             model={"arch": "mlp", "hidden": [8]})
    with pytest.raises(SpecError, match=r"variants\[0\]\.engine: Input should be 'converter' "
                                        r"or 'ai_edge_quantizer' \(got 'tflite'\)"):
        load(tmp_path, [{"name": "d", "kind": "dynamic_range", "engine": "tflite"}],
             model={"arch": "mlp", "hidden": [8]})


def test_the_engine_is_a_param_of_its_quantize_stage(tmp_path: Path) -> None:
    """So that switching engines re-runs that variant: with the variant's gate set (its keys
    are then listed one by one, without the gate), `engine` is one of them."""
    request = load(tmp_path, [{"name": "d", "kind": "dynamic_range",
                               "engine": "ai_edge_quantizer", "gate": {"min_accuracy": 0.5}}])
    params = stage_params("pipelines.tiny", request.pipeline, "quantize", 0)
    assert "pipelines.tiny.variants.0.engine" in params
    assert "pipelines.tiny.variants.0.gate" not in params


def test_inspect_lists_the_kinds_a_tflite_takes_with_the_engine(tmp_path: Path) -> None:
    from quantflow.domain.inspect import _kinds

    request = load(tmp_path, [{"name": "i8", "kind": "int8", "engine": "ai_edge_quantizer"}])
    rows, problems = _kinds(request.step)
    applies = [name for name, ok, _ in rows if ok]
    assert applies == [f"{k} (with engine: ai_edge_quantizer)" for k in AEQ_KINDS] + ["auto"]
    assert [name for name, ok, _ in rows if not ok] == ["qat"]
    assert problems == []  # the variant's own engine decides, not its kind's default
