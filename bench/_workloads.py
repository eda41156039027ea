"""The benchmark's two workloads (issue #14), each a quantflow pipeline and its plain script:

* `seed_cnn`: the seeds' MNIST experiment, pipelines.yaml `mnist` as the project ships it;
* `mobilenet`: the realistic model, MobileNetV2 (alpha 0.35) brought as a `model.builder` file,
  its data (MNIST padded to 32x32x3) as an `.npz` in the workspace, with the float baseline and
  seven variants (six post-training, QAT for one epoch).

A workload knows its spec, the files its workspace needs, its plain script's command line and
its time targets; bench/run_bench.py measures every workload the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import _mnist32
import _workspace as wsp

BENCH = Path(__file__).resolve().parent

MOBILENET_VARIANTS = [
    {"name": "dynamic_range", "kind": "dynamic_range"},
    {"name": "float16", "kind": "float16"},
    {"name": "int8_fallback", "kind": "int8_float_fallback"},
    {"name": "int8", "kind": "int8", "io_type": "int8"},
    {"name": "int8_uint8", "kind": "int8", "io_type": "uint8"},
    {"name": "int16x8", "kind": "int16x8"},
    {"name": "qat", "kind": "qat", "epochs": 1},
]
QUICK_MOBILENET = ("dynamic_range", "int8")  # --quick: one plain and one calibrated kind


@dataclass(frozen=True)
class Workload:
    key: str
    pipeline: str
    title: str
    running_target: float  # cold run, already-running Prefect server: max ratio to plain
    ephemeral_target: float  # cold run, quantflow's own temporary server
    plain_script: str
    variants: Callable[[], list[dict]]
    spec_of: Callable[[list[dict], int, int, dict | None], dict]
    populate: Callable[[Path], None] | None = None

    def spec(self, variants: list[dict], train: int, test: int,
             evaluation: dict | None = None) -> dict:
        return self.spec_of(variants, train, test, evaluation)

    def plain_cmd(self, python: str, variants: list[dict], train: int, test: int,
                  out: Path) -> list[str]:
        cmd = [python, str(BENCH / self.plain_script), "--data", str(wsp.MNIST),
               "--train-size", str(train), "--test-size", str(test), "--json", str(out)]
        if self.key == "mobilenet":
            cmd += ["--variants", ",".join(v["name"] for v in variants)]
        return cmd


def _seed_spec(variants: list[dict], train: int, test: int, evaluation: dict | None) -> dict:
    spec = wsp.pipeline_spec(len(variants), train, test, None, evaluation)
    spec["pipelines"][wsp.PIPELINE]["variants"] = variants
    return spec


def _mobilenet_spec(variants: list[dict], train: int, test: int,
                    evaluation: dict | None) -> dict:
    """What a team bringing this model would write; gate and publish as in `mnist`."""
    pipe = {
        "description": "MobileNetV2 (alpha 0.35) on MNIST padded to 32x32x3 (issue #14).",
        "dataset": {"source": "npz", "path": _mnist32.NPZ, "train_size": train,
                    "test_size": test, "shuffle": False, "normalize": "max"},
        "model": {"builder": _mnist32.BUILDER,
                  "params": {"alpha": _mnist32.ALPHA, "bn_momentum": _mnist32.BN_MOMENTUM}},
        "train": {"epochs": 1, "batch_size": 32, "optimizer": "adam", "learning_rate": 0.001,
                  "seed": 0},
        "calibration": {"samples": 200, "split": "train", "seed": 0},
        "variants": variants,
        "gate": {"max_accuracy_drop": 0.02, "min_compression_ratio": 1.5},
        "publish": {"registry": "registry", "strategy": "best", "objective": "smallest_size",
                    "alias": "latest"},
    }
    if evaluation:
        pipe["evaluation"] = evaluation
    return {"execution": {"max_workers": 2, "artifacts": "artifacts"},
            "pipelines": {"mobilenet": pipe}}


SEED_CNN = Workload("seed_cnn", wsp.PIPELINE, "seed CNN (pipelines.yaml mnist)", 0.8, 1.2,
                    "plain_script.py", lambda: wsp.repo_pipeline()["variants"], _seed_spec)
MOBILENET = Workload(
    "mobilenet", "mobilenet", "realistic: MobileNetV2 alpha 0.35, 32x32x3", 0.35, 0.45,
    "plain_mobilenet.py", lambda: [dict(v) for v in MOBILENET_VARIANTS], _mobilenet_spec,
    lambda ws: _mnist32.write_workspace_files(ws, wsp.MNIST))
WORKLOADS = {w.key: w for w in (SEED_CNN, MOBILENET)}


def sizes(workload: Workload, quick: bool) -> tuple[int, int]:
    """(train, test) images: the issue's 8,000 / 2,000; --quick: 2,000 / 500 (seed CNN),
    1,000 / 250 (MobileNetV2: its conversions, not its images, cost the time)."""
    if not quick:
        return 8000, 2000
    return (1000, 250) if workload.key == "mobilenet" else (2000, 500)


def cold_server_only(workload: Workload, quick: bool) -> bool:
    """--quick measures MobileNetV2 against the plain script with the running server only: its
    ephemeral, gate-only and no-op runs cost little more than the seed CNN's, which --quick
    keeps, and would take the smoke run past 5 minutes."""
    return quick and workload.key == "mobilenet"


def variants_for(workload: Workload, quick: bool) -> list[dict]:
    found = workload.variants()
    if quick and workload.key == "mobilenet":
        found = [v for v in found if v["name"] in QUICK_MOBILENET]
    return found
