"""publish: copy the gate's selection into the registry as a new immutable version.

Obeys the gate: with nothing selected it publishes nothing and leaves the alias alone; with
the same bytes and decisions as the alias's version it publishes nothing new ("unchanged").
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from quantflow.core.request import StepContext
from quantflow.core.results import GateResult, PublishRecord, VariantMetrics
from quantflow.core.tfenv import versions
from quantflow.domain import objstore, registry, report_page
from quantflow.steps.gate import load_metrics
from quantflow.steps.prepare import PrepareInfo
from quantflow.versioning import dvc

# The manifest records the fingerprint of the whole pipeline spec.
READS = ("",)


def _git_commit(ctx: StepContext) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ctx.workspace, text=True,
                             capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def manifest_extra(ctx: StepContext, gate: GateResult, baseline: VariantMetrics,
                   variants: list[VariantMetrics]) -> dict[str, Any]:
    p = ctx.paths
    info = PrepareInfo.read(p.prepare_info)
    return {
        "spec_sha256": ctx.pipeline.fingerprint(),
        "dataset_sha256": info.dataset_sha256,
        "calibration_sha256": info.calibration_sha256,
        "dvc_md5": {  # DVC's own record (what `dvc get`/`dvc pull` fetch); None: DVC has none
            "calibration": dvc.md5_of(ctx.workspace, p.calibration),
            **{name: dvc.md5_of(ctx.workspace, p.variant_tflite(name)) for name in gate.selected},
        },
        "metrics": {m.name: m.model_dump(mode="json") for m in [baseline, *variants]},
        "versions": versions(),
        "git_commit": _git_commit(ctx),
    }


def publish(ctx: StepContext) -> PublishRecord:
    """Publish what the gate selected, but only the bytes each evaluation measured (their
    sha256 is in the variant's metrics), and record it with paths relative to the workspace:
    publish.json is committed, and a host path there would be wrong on every other clone."""
    p = ctx.paths
    gate = GateResult.read(p.gate)
    baseline, variants = load_metrics(ctx)
    files = {name: p.variant_tflite(name) for name in gate.selected}
    extra = manifest_extra(ctx, gate, baseline, variants)
    page = report_page.Attachment(ctx, extra)  # report.html, published beside the models
    root, store = ctx.pipeline.publish.registry, registry
    if objstore.is_url(root):  # workers elsewhere publish into one bucket
        store, where = objstore, root
    else:
        where = p.registry
    record = store.publish(ctx.name, gate, files, where, ctx.pipeline.publish.alias, extra,
                           evaluated={m.name: m.sha256 for m in variants}, attach=page)
    if record.path is not None and not objstore.is_url(record.path):
        record.path = Path(os.path.relpath(record.path, ctx.workspace)).as_posix()
    record.write(p.publish_record)
    page.finish(record)
    if record.status == "published":
        problem = dvc.push_outputs(ctx.workspace, [p.calibration, *(
            p.variant_dir(n) for n in gate.selected)])
        if problem:
            print(f"warning: dvc push: {problem}", file=sys.stderr)
    return record


def exit_code(record: PublishRecord) -> int:
    """`quantflow step publish` exits 3 when the gate blocked everything (see cli.py);
    "unchanged" (already published) is a success.

    Under `dvc repro` (DVC_STAGE set) a blocked gate is a completed stage: exiting non-zero
    would leave publish unrecorded and re-run forever; publish.json says "blocked".
    """
    if record.status != "blocked" or os.environ.get("DVC_STAGE"):
        return 0
    return 3


run = publish
