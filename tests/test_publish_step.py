"""The publish step on a workspace of real files (fake .tflite bytes: publish reads no model):
it publishes only the bytes each evaluation measured, records paths relative to the
workspace, and publishes nothing new for the same bytes and decisions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quantflow.core.io import sha256_file
from quantflow.core.request import load_request
from quantflow.core.results import GateResult, PublishRecord, VariantDecision, VariantMetrics
from quantflow.domain import registry as reg
from quantflow.steps import StepContext
from quantflow.steps import publish as step
from quantflow.steps.prepare import PrepareInfo
from tests.tiny import tiny_spec, write_workspace


def evaluated(ctx: StepContext, name: str, blob: bytes) -> None:
    """What quantize leaves behind: the model and the metrics of exactly those bytes."""
    p = ctx.paths
    p.variant_tflite(name).parent.mkdir(parents=True, exist_ok=True)
    p.variant_tflite(name).write_bytes(blob)
    VariantMetrics(name=name, kind="int8", accuracy=0.9, size_bytes=len(blob),
                   sha256=sha256_file(p.variant_tflite(name))).write(p.variant_metrics(name))


def gated(ctx: StepContext, passed: list[str]) -> None:
    decisions = [VariantDecision(name=v.name, passed=v.name in passed, reason="r")
                 for v in ctx.pipeline.variants]
    GateResult(pipeline=ctx.name, decisions=decisions, selected=passed).write(ctx.paths.gate)


@pytest.fixture
def ctx(tmp_path: Path) -> StepContext:
    write_workspace(tmp_path / "ws", tiny_spec())
    ctx = load_request(tmp_path / "ws", "pipelines.yaml", [], "tiny").step
    p = ctx.paths
    PrepareInfo(source="sklearn_digits", num_classes=10, input_shape=[8, 8], train_examples=600,
                test_examples=200, calibration_examples=50, dataset_sha256="a" * 64,
                calibration_sha256="b" * 64).write(p.prepare_info)
    VariantMetrics(name="float", kind="float", accuracy=0.9, size_bytes=4000).write(
        p.baseline_metrics)
    evaluated(ctx, "dr", b"TFL3 dynamic range")
    evaluated(ctx, "i8", b"TFL3 int8 model bytes")
    gated(ctx, ["dr", "i8"])
    return ctx


def test_publish_json_records_paths_relative_to_the_workspace(ctx: StepContext) -> None:
    record = step.publish(ctx)
    assert record.status == "published"
    assert record.path == f"registry/tiny/{record.version}"
    text = ctx.paths.publish_record.read_text()
    assert str(ctx.workspace) not in text and PublishRecord.read(ctx.paths.publish_record) == record
    assert (ctx.workspace / record.path / "i8.tflite").is_file()


def test_the_same_bytes_again_are_unchanged_and_exit_0(ctx: StepContext) -> None:
    first = step.publish(ctx)
    gated(ctx, ["dr", "i8"])  # the gate ran again (a threshold edit), same decisions
    again = step.publish(ctx)
    assert again.status == "unchanged" and step.exit_code(again) == 0
    assert again.message == f"unchanged: already published as {first.version}"
    assert json.loads(ctx.paths.publish_record.read_text())["status"] == "unchanged"
    assert reg.list_versions(ctx.paths.registry) == [first.version]

    gated(ctx, ["i8"])  # dr newly fails: a new decision is published
    third = step.publish(ctx)
    assert third.status == "published" and third.files == ["i8.tflite"]
    assert reg.resolve_alias(ctx.paths.registry, "latest") == third.version


def test_publish_refuses_bytes_other_than_the_evaluated_ones(ctx: StepContext) -> None:
    first = step.publish(ctx)
    record_before = ctx.paths.publish_record.read_text()
    model = ctx.paths.variant_tflite("i8")
    blob = bytearray(model.read_bytes())
    blob[5] ^= 0x01
    model.write_bytes(bytes(blob))
    gated(ctx, ["i8"])  # a new decision, so publish would otherwise write a version
    with pytest.raises(reg.IntegrityError, match="^i8: the file changed since it was evaluated; "
                                                 "re-run with --force"):
        step.publish(ctx)
    assert reg.list_versions(ctx.paths.registry) == [first.version]
    assert reg.resolve_alias(ctx.paths.registry, "latest") == first.version
    assert sorted(p.name for p in ctx.paths.registry.iterdir()) == sorted(
        [first.version, "latest", reg.LOCK])
    assert ctx.paths.publish_record.read_text() == record_before


def test_without_dvc_the_manifest_claims_no_dvc_md5(ctx: StepContext) -> None:
    record = step.publish(ctx)
    manifest = json.loads((ctx.workspace / record.path / reg.MANIFEST).read_text())
    assert manifest["dvc_md5"] == {"calibration": None, "dr": None, "i8": None}
    assert manifest["metrics"]["i8"]["sha256"] == manifest["files"]["i8.tflite"]["sha256"]
