"""Latency of .tflite models with quantflow's own measurement (evaluate.measure_latency)
and the evaluation settings of the workspace's pipeline (warm-up runs, timed runs, threads).

bench/run_bench.py runs this twice in a row, in two fresh processes, and compares the p50s.

    python bench/_latency.py WORKSPACE PIPELINE NAME=MODEL.tflite...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from quantflow.core import io
from quantflow.core.request import load_request
from quantflow.domain.evaluate import load_test_split, measure_latency


def main(argv: list[str]) -> None:
    workspace, pipeline, *models = argv
    ctx = load_request(workspace, "pipelines.yaml", [], pipeline).step
    x, _, _ = load_test_split(ctx.paths.dataset)
    out = {}
    for item in models:
        name, path = item.split("=", 1)
        latency = measure_latency(Path(path), io.take(x, slice(0, 1)),
                                 ctx.pipeline.evaluation)
        out[name] = latency.model_dump(mode="json")
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
