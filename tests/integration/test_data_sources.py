"""A folder of PNGs per class and a CSV table, end to end through `quantflow run`: real
training, conversion, LiteRT evaluation and publishing."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from quantflow.cli import app
from quantflow.domain.registry import list_versions
from tests.test_readers import write_images
from tests.tiny import tiny_spec, write_workspace

pytestmark = pytest.mark.integration


def write_breast_cancer_csv(path) -> None:
    from sklearn.datasets import load_breast_cancer

    bc = load_breast_cancer()
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["diagnosis", *bc.feature_names])
        for row, label in zip(bc.data, bc.target, strict=True):
            w.writerow([int(label), *(f"{v:.6g}" for v in row)])


def test_image_dir_and_csv_pipelines_run_and_publish(prefect_harness, tmp_path):
    ws = tmp_path / "ws"
    write_images(ws / "imgs", per_class=20)
    write_breast_cancer_csv(ws / "bc.csv")
    base = tiny_spec()["pipelines"]["tiny"]
    imgs = {**base, "dataset": {"source": "image_dir", "path": "imgs", "image_size": [8, 8],
                                "train_size": 40, "test_size": 20, "seed": 1},
            "calibration": {"samples": 20, "split": "train", "seed": 0},
            "train": {**base["train"], "epochs": 40, "batch_size": 8}}
    table = {**base, "dataset": {"source": "csv", "path": "bc.csv", "label": "diagnosis",
                                 "train_size": 400, "test_size": 169, "normalize": "standard"},
             # 30 x 64 weights: above the 1,024 elements below which dynamic range
             # quantization leaves a kernel in float (the kind's promise would then fail)
             "model": {"arch": "mlp", "hidden": [64]},
             "gate": {"min_accuracy": 0.85, "max_accuracy_drop": 0.05}}
    spec = write_workspace(ws, {"execution": {"max_workers": 2},
                                "pipelines": {"imgs": imgs, "table": table}})
    result = CliRunner().invoke(app, ["run", "--spec", str(spec)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for name, classes in (("imgs", 3), ("table", 2)):
        [version] = list_versions(ws / "registry" / name)
        manifest = json.loads((ws / "registry" / name / version / "manifest.json").read_text())
        assert {f["variant"] for f in manifest["files"].values()} == {"dr", "i8"}
        assert manifest["metrics"]["i8"]["num_classes"] == classes
        assert manifest["metrics"]["float"]["accuracy"] >= 0.85
    info = json.loads((ws / "artifacts" / "imgs" / "prepare" / "info.json").read_text())
    assert info["class_names"] == ["cat", "dog", "owl"] and info["input_shape"] == [8, 8, 3]
