"""A tiny but real pipeline (sklearn digits, small MLP) used by integration tests."""

from __future__ import annotations

from pathlib import Path

import yaml

TINY = {
    "execution": {"max_workers": 2, "artifacts": "artifacts"},
    "pipelines": {
        "tiny": {
            "dataset": {"source": "sklearn_digits", "train_size": 600, "test_size": 200,
                        "seed": 0},
            "model": {"arch": "mlp", "hidden": [32]},
            "train": {"epochs": 8, "batch_size": 32, "learning_rate": 0.01, "seed": 0},
            "calibration": {"samples": 50, "split": "train", "seed": 0},
            "variants": [
                {"name": "dr", "kind": "dynamic_range"},
                {"name": "i8", "kind": "int8", "io_type": "int8"},
            ],
            "gate": {"min_accuracy": 0.5, "max_accuracy_drop": 0.1},
            "evaluation": {"warmup_runs": 2, "timed_runs": 10, "batch_size": 128},
            "publish": {"registry": "registry", "strategy": "all_passing", "alias": "latest"},
        }
    },
}


def tiny_spec(**pipeline_updates: object) -> dict:
    spec = yaml.safe_load(yaml.safe_dump(TINY))
    spec["pipelines"]["tiny"].update(pipeline_updates)
    return spec


def write_workspace(root: Path, spec: dict | None = None) -> Path:
    """Write pipelines.yaml into ``root`` and return its path."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "pipelines.yaml"
    path.write_text(yaml.safe_dump(spec or TINY, sort_keys=False))
    return path
