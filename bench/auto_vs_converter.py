"""auto (ai-edge-quantizer search) against the converter's int8 on the digits pipeline, in one
run. Run it from an empty folder: it writes pipelines.yaml and artifacts/ there."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = [{"name": "i8", "kind": "int8", "io_type": "float32"},
            {"name": "auto", "kind": "auto", "gate": {"max_accuracy_drop": 0.005}}]


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from quantflow.core.request import load_request
    from quantflow.steps import export, prepare, quantize, train

    pipe = yaml.safe_load((ROOT / "pipelines.yaml").read_text())["pipelines"]["digits"]
    pipe["variants"] = VARIANTS
    pipe.pop("publish", None)
    Path("pipelines.yaml").write_text(yaml.safe_dump({"pipelines": {"digits": pipe}}))
    ctx = load_request(Path("."), "pipelines.yaml", [], "digits").step
    t0 = time.time()
    prepare.run(ctx), train.run(ctx), export.run(ctx)
    print(f"prepare+train+export {time.time() - t0:.1f} s", flush=True)
    for v in VARIANTS:
        t0 = time.time()
        m = quantize.run(ctx, v["name"])
        print(f"{v['name']}: {m.status} {time.time() - t0:.2f} s, {m.size_bytes} bytes, "
              f"drop {m.metric_drop} {m.error or ''}", flush=True)
    found = json.loads((ctx.paths.variant_dir("auto") / "search.json").read_text())
    print(f"auto: {found['evaluations']} evaluations, {found['wall_seconds']} s")


if __name__ == "__main__":
    main()
