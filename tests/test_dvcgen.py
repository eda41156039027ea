"""dvc.yaml generation: the committed file is current, and each stage's params are exactly the
spec keys its step reads, so an edit invalidates only what it can change."""

from __future__ import annotations

from pathlib import Path

import dpath
import pytest
import yaml

from quantflow.core.errors import SpecError
from quantflow.core.paths import pipeline_paths
from quantflow.core.specload import load_spec
from quantflow.versioning.dvc import _with_downstream
from quantflow.versioning.dvcgen import Stage, all_stages, pipeline_stages, render, write_dvc_yaml
from tests.tiny import tiny_spec, write_workspace

ROOT = Path(__file__).resolve().parents[1]


def test_committed_dvc_yaml_is_up_to_date():
    spec = load_spec(ROOT / "pipelines.yaml", pipelines=[]).spec  # no data files needed
    committed = (ROOT / "dvc.yaml").read_text(encoding="utf-8")
    assert committed == render(spec, "pipelines.yaml"), \
        "dvc.yaml is out of date with pipelines.yaml: run `quantflow dvc` and commit it"


def test_every_param_key_exists_in_the_committed_spec():
    """DVC refuses to run a stage whose params name a key the file lacks."""
    data = yaml.safe_load((ROOT / "pipelines.yaml").read_text(encoding="utf-8"))
    for stage in all_stages(load_spec(ROOT / "pipelines.yaml", pipelines=[]).spec):
        for key in stage.params:
            dpath.get(data, key, separator=".")  # raises KeyError when missing


def _spec(tmp_path: Path, raw: dict):
    return load_spec(write_workspace(tmp_path, raw)).spec


def _tiny_with_override() -> dict:
    raw = tiny_spec()
    raw["pipelines"]["tiny"]["variants"][1]["gate"] = {"max_accuracy_drop": 0.2}
    return raw


def test_params_are_the_keys_each_step_reads(tmp_path):
    stages = {s.name: s for s in pipeline_stages(_spec(tmp_path, _tiny_with_override()), "tiny")}
    k = "pipelines.tiny"
    assert {name: s.params for name, s in stages.items()} == {
        "tiny-prepare": [f"{k}.dataset", f"{k}.calibration"],
        "tiny-train": [f"{k}.model", f"{k}.train"],
        "tiny-export": [f"{k}.evaluation"],
        # a variant's whole item; one with a gate override lists its other keys instead
        "tiny-quantize-dr": [f"{k}.variants.0", f"{k}.train", f"{k}.evaluation"],
        "tiny-quantize-i8": [f"{k}.variants.1.io_type", f"{k}.variants.1.kind",
                             f"{k}.variants.1.name", f"{k}.train", f"{k}.evaluation"],
        "tiny-gate": [f"{k}.gate", f"{k}.variants.1.gate", f"{k}.publish"],
        "tiny-publish": [k],  # the manifest hashes the whole pipeline spec
    }


def test_unwritten_sections_are_not_tracked(tmp_path):
    raw = tiny_spec()
    for section in ("train", "calibration", "evaluation", "gate", "publish"):
        del raw["pipelines"]["tiny"][section]
    stages = {s.name: s for s in pipeline_stages(_spec(tmp_path, raw), "tiny")}
    assert stages["tiny-export"].params == []
    assert stages["tiny-gate"].params == []
    assert stages["tiny-prepare"].params == ["pipelines.tiny.dataset"]
    assert stages["tiny-export"].to_dvc("pipelines.yaml")["params"] == [
        {".quantflow/toolchain.yaml": ["quantflow.version", "quantflow.code.export",
                                       "packages.tensorflow", "packages.tf-keras",
                                       "packages.ai-edge-litert"]}], "only the toolchain's keys"


def test_paths_come_from_pipeline_paths(tmp_path):
    spec = _spec(tmp_path, tiny_spec())
    p = pipeline_paths(spec, "tiny", Path("."))
    stages = {s.name: s for s in pipeline_stages(spec, "tiny")}
    rel = str
    assert stages["tiny-prepare"].outs == [rel(p.dataset), rel(p.calibration), rel(p.prepare_info)]
    assert stages["tiny-quantize-i8"].outs == [rel(p.variant_dir("i8"))]
    # What each reads: the converter's int8 the SavedModel and (its shared calibration) the
    # float .tflite; dynamic range no calibration; none of them the trained model (QAT does).
    assert stages["tiny-quantize-i8"].deps == [rel(p.saved_model), rel(p.float_tflite),
                                               rel(p.calibration), rel(p.dataset),
                                               rel(p.baseline_metrics), rel(p.float_outputs)]
    assert stages["tiny-quantize-dr"].deps == [rel(p.saved_model), rel(p.dataset),
                                               rel(p.baseline_metrics), rel(p.float_outputs)]
    gate = stages["tiny-gate"].to_dvc("pipelines.yaml")
    assert gate["metrics"] == [{rel(p.metrics): {"cache": False}}]
    [(plot, props)] = gate["plots"][0].items()
    assert plot == rel(p.plot)
    assert (props["x"], props["y"], props["template"]) == ("size_bytes", "accuracy",
                                                          "accuracy_vs_size")
    assert stages["tiny-publish"].to_dvc("pipelines.yaml")["outs"] == [
        {rel(p.publish_record): {"cache": False}}]


def test_commands_call_the_step_functions(tmp_path):
    stages = pipeline_stages(_spec(tmp_path, tiny_spec()), "tiny")
    cmds = [s.to_dvc("pipelines.yaml")["cmd"] for s in stages]
    assert cmds == [f"quantflow step {s} tiny --spec pipelines.yaml"
                    for s in ("prepare", "train", "export")] + [
        "quantflow step quantize tiny dr --spec pipelines.yaml",
        "quantflow step quantize tiny i8 --spec pipelines.yaml",
        "quantflow step gate tiny --spec pipelines.yaml",
        "quantflow step publish tiny --spec pipelines.yaml"]


def test_user_files_are_dependencies(tmp_path):
    raw = tiny_spec(dataset={"source": "idx", "path": "../data/mnist/", "train_size": 10,
                             "test_size": 10},
                    model={"path": "models/mine.keras"})
    raw["pipelines"]["tiny"]["calibration"] = {"path": "data/calib.npz"}
    ws = tmp_path / "ws"
    for f in ("data/mnist/t10k-images-idx3-ubyte.gz", "data/mnist/t10k-labels-idx1-ubyte.gz",
              "ws/data/calib.npz", "ws/models/mine.keras"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_bytes(b"")
    stages = {s.step: s for s in pipeline_stages(_spec(ws, raw), "tiny")}
    assert stages["prepare"].deps == ["../data/mnist/t10k-images-idx3-ubyte.gz",
                                      "../data/mnist/t10k-labels-idx1-ubyte.gz",
                                      "data/calib.npz"]
    assert stages["train"].deps == ["artifacts/tiny/prepare/dataset.npz", "models/mine.keras"]


def test_outputs_outside_the_workspace_are_refused_when_the_spec_loads(tmp_path):
    raw = tiny_spec()
    raw["execution"]["artifacts"] = "../elsewhere"
    with pytest.raises(SpecError, match="execution.artifacts: .*must stay inside"):
        _spec(tmp_path, raw)


def test_colliding_stage_names_are_refused_when_the_spec_loads(tmp_path):
    raw = tiny_spec(variants=[{"name": "gate", "kind": "dynamic_range"}])
    raw["pipelines"]["tiny-quantize"] = raw["pipelines"]["tiny"]  # its gate: tiny-quantize-gate
    with pytest.raises(SpecError, match=r"pipelines.tiny-quantize: stage name "
                                        r"'tiny-quantize-gate' .* pipeline 'tiny', variant 'gate'"):
        _spec(tmp_path, raw)


def test_write_is_idempotent_and_check_does_not_write(tmp_path):
    spec_path = write_workspace(tmp_path, tiny_spec())
    spec = load_spec(spec_path).spec
    assert write_dvc_yaml(spec, spec_path, check=True) is True
    assert not (tmp_path / "dvc.yaml").exists()
    assert write_dvc_yaml(spec, spec_path) is True
    assert write_dvc_yaml(spec, spec_path) is False
    assert write_dvc_yaml(spec, spec_path, check=True) is False
    assert yaml.safe_load((tmp_path / "dvc.yaml").read_text())["stages"]


# ------------------------------------------------- what an edit invalidates (DVC's lookups)
def _values(stages: list[Stage], data: dict) -> dict[str, list]:
    """Each stage's param values as DVC reads them (dpath key paths, '.' separated)."""
    return {s.name: [dpath.get(data, k, separator=".") for k in s.params] for s in stages}


def _rerun(tmp_path: Path, edit) -> set[str]:
    raw = _tiny_with_override()
    stages = pipeline_stages(_spec(tmp_path / "a", raw), "tiny")
    before = _values(stages, raw)
    edited = yaml.safe_load(yaml.safe_dump(raw))
    edit(edited["pipelines"]["tiny"])
    after_stages = pipeline_stages(_spec(tmp_path / "b", edited), "tiny")
    assert [s.params for s in after_stages] == [s.params for s in stages]
    changed = {n for n, v in _values(stages, edited).items() if v != before[n]}
    return _with_downstream(stages, changed)


def test_gate_threshold_invalidates_only_gate_and_publish(tmp_path):
    def edit(p):
        p["gate"]["min_accuracy"] = 0.6
    assert _rerun(tmp_path, edit) == {"tiny-gate", "tiny-publish"}


def test_variant_gate_override_invalidates_only_gate_and_publish(tmp_path):
    def edit(p):
        p["variants"][1]["gate"]["max_accuracy_drop"] = 0.3
    assert _rerun(tmp_path, edit) == {"tiny-gate", "tiny-publish"}


def test_one_variant_setting_invalidates_that_variant_gate_and_publish(tmp_path):
    def edit(p):
        p["variants"][1]["io_type"] = "uint8"
    assert _rerun(tmp_path, edit) == {"tiny-quantize-i8", "tiny-gate", "tiny-publish"}


def test_training_settings_invalidate_everything_downstream(tmp_path):
    def edit(p):
        p["train"]["epochs"] = 3
    assert _rerun(tmp_path, edit) == {"tiny-train", "tiny-export", "tiny-quantize-dr",
                                      "tiny-quantize-i8", "tiny-gate", "tiny-publish"}


def test_evaluation_settings_invalidate_export_and_every_variant(tmp_path):
    def edit(p):
        p["evaluation"]["timed_runs"] = 20
    assert _rerun(tmp_path, edit) == {"tiny-export", "tiny-quantize-dr", "tiny-quantize-i8",
                                      "tiny-gate", "tiny-publish"}
