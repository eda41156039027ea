"""dvc.yaml, generated from the spec: one DVC stage per step of each pipeline.

Every path comes from ``quantflow.core.paths``; every param is a key path into the spec file that
the step reads, so DVC re-runs exactly what a spec edit can change, or a key of the toolchain
file (quantflow's code, package versions: ``toolchain``), so DVC re-runs exactly what an
upgrade can change (docs/DVC.md). Stages are spelled out, not written with ``foreach``: DVC
rejects interpolated lists, and stages of one kind track different numbers of keys and files.
A team's own stages in dvc.yaml are kept (``dvcfile``).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from quantflow.core import io
from quantflow.core.paths import PipelinePaths, pipeline_paths
from quantflow.core.spec import PipelineSpec, Spec, dataset_files
from quantflow.core.stages import stage_name
from quantflow.metrics import TASK_DEFAULTS
from quantflow.steps import declared_reads
from quantflow.versioning import dvcfile, toolchain

PLOT_TEMPLATE = "accuracy_vs_size"  # .dvc/plots/accuracy_vs_size.json
LATENCY_TEMPLATE = "bar_horizontal"  # DVC's own: one bar per row, revisions side by side
HEADER = ("# Stages whose cmd is `quantflow step ...` are generated from {spec} by\n"
          "# `quantflow dvc` (one per step of each pipeline: <pipeline>-<step>[-<variant>]) and\n"
          "# rewritten on each run; edit {spec} instead. Stages of your own are kept as\n"
          "# written. See docs/DVC.md.\n")


@dataclass(frozen=True)
class Stage:
    """One dvc.yaml stage and the step it runs."""

    name: str
    step: str
    pipeline: str
    variant: str | None = None
    kind: str | None = None  # the variant's kind (its converter's code is a param)
    deps: list[str] = field(default_factory=list)
    params: list[str] = field(default_factory=list)
    outs: list[str] = field(default_factory=list)
    records: list[str] = field(default_factory=list)  # outs kept out of the DVC cache (git's)
    metrics: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    plot_y: str = "accuracy"  # the primary metric's column of variants.csv

    @property
    def toolchain(self) -> list[str]:
        """Keys of the toolchain file: quantflow's code and the packages this stage runs."""
        return toolchain.param_keys(self.step, self.kind)

    @property
    def produces(self) -> list[str]:
        return self.outs + self.records + self.metrics + self.plots

    def to_dvc(self, spec_file: str) -> dict[str, Any]:
        args = " ".join(a for a in (self.step, self.pipeline, self.variant) if a)
        out: dict[str, Any] = {"cmd": f"quantflow step {args} --spec {spec_file}"}
        if self.deps:
            out["deps"] = self.deps
        params = [{spec_file: self.params}] if self.params else []
        out["params"] = params + [{toolchain.TOOLCHAIN_FILE: self.toolchain}]
        if self.outs or self.records:
            out["outs"] = self.outs + [{r: {"cache": False}} for r in self.records]
        if self.metrics:
            out["metrics"] = [{m: {"cache": False}} for m in self.metrics]
        if self.plots:
            out["plots"] = [{p: self.plot_props(p)} for p in self.plots]
        return out

    def plot_props(self, path: str) -> dict[str, Any]:
        """The scatter needs quantflow's template (labels, gate shapes); latency is a bar per
        row, which DVC's built-in bar_horizontal draws as it is."""
        if posixpath.basename(path) == "latency.csv":
            return {"cache": False, "template": LATENCY_TEMPLATE, "x": "latency_ms", "y": "bar",
                    "title": f"{self.pipeline}: latency per inference",
                    "x_label": "latency (ms)", "y_label": "model, percentile (threads)"}
        y = self.plot_y
        return {"cache": False, "template": PLOT_TEMPLATE, "x": "size_bytes", "y": y,
                "title": f"{self.pipeline}: {y} vs size", "x_label": "size (bytes)",
                "y_label": f"test {y}"}


def _rel(path: Path | str) -> str:
    text = posixpath.normpath(Path(path).as_posix())
    if text.startswith("/") or text == ".." or text.startswith("../"):
        raise ValueError(f"{text}: DVC outputs must stay inside the workspace")
    return text


def _node(model: Any, parts: list[str]) -> Any:
    """The value at ``parts`` below ``model`` if the spec file sets every key on the way, else
    None: DVC fails on a param key the file lacks (a default is not in the file)."""
    node = model
    for part in parts:
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                return None
            node = node[int(part)]
        elif isinstance(node, BaseModel) and part in node.model_fields_set:
            node = getattr(node, part)
        else:
            return None
    return node


def _expand(pattern: str, pipe: PipelineSpec, variant: int | None) -> list[str]:
    """Concrete key paths of one READS pattern: ``{variant}`` is this stage's variant index,
    ``*`` every variant index."""
    pattern = pattern.replace("{variant}", str(variant)) if variant is not None else pattern
    if "*" not in pattern:
        return [pattern]
    head, tail = pattern.split("*", 1)
    return [f"{head}{i}{tail}" for i in range(len(pipe.variants))]


def stage_params(key: str, pipe: PipelineSpec, stage: str, variant: int | None = None) \
        -> list[str]:
    """dvc.yaml params of a stage, derived from its step's READS declaration: every declared
    key the spec file sets. A whole section is listed rather than its keys, so a key added to
    it later is seen too; a section with an excluded sub-key set lists its other keys."""
    reads = declared_reads(stage)
    excluded = {e for p in reads if p.startswith("-") for e in _expand(p[1:], pipe, variant)}
    out: list[str] = []
    for pattern in (p for p in reads if not p.startswith("-")):
        for path in _expand(pattern, pipe, variant):
            parts = path.split(".") if path else []
            node = _node(pipe, parts)
            if node is None:
                continue
            cut = {e.rsplit(".", 1)[1] for e in excluded if e.rsplit(".", 1)[0] == path}
            if isinstance(node, BaseModel) and cut & node.model_fields_set:
                out += [f"{key}.{path}.{n}" for n in sorted(node.model_fields_set - cut)]
            else:
                out.append(f"{key}.{path}" if path else key)
    return out


def _data_files(spec: PipelineSpec) -> list[str]:
    """User files prepare reads, as the spec names them (relative to the workspace)."""
    files = []
    files += [path for _, path in dataset_files(spec.dataset)]
    if spec.calibration.path is not None:
        files.append(spec.calibration.path)
    return [posixpath.normpath(f) for f in files]


def _gate_params(key: str, pipe: PipelineSpec, i: int) -> list[str]:
    """A kind that searches with the gate (``reads_gate``: auto) depends on the gate's keys."""
    v = pipe.variants[i]
    if not getattr(v, "reads_gate", False):
        return []
    return ([f"{key}.gate"] if "gate" in pipe.model_fields_set else []) + \
        ([f"{key}.variants.{i}.gate"] if "gate" in v.model_fields_set else [])


def _model_files(spec: PipelineSpec) -> list[str]:
    """Files the model source reads (a user's model file or SavedModel folder, for `path`)."""
    return [posixpath.normpath(f) for f in spec.model.files().values()]


def pipeline_stages(spec: Spec, name: str) -> list[Stage]:
    """The stages of one pipeline, in DAG order."""
    pipe = spec.pipelines[name]
    p = pipeline_paths(spec, name, Path("."))
    key = f"pipelines.{name}"
    variant_dirs = [_rel(p.variant_dir(v.name)) for v in pipe.variants]
    stages = [
        Stage(stage_name("prepare", name), "prepare", name, deps=_data_files(pipe),
              params=stage_params(key, pipe, "prepare"),
              outs=[_rel(p.dataset), _rel(p.calibration), _rel(p.prepare_info)]),
        Stage(stage_name("train", name), "train", name, deps=[_rel(p.dataset), *_model_files(pipe)],
              params=stage_params(key, pipe, "train"),
              outs=[_rel(p.trained), _rel(p.train_info)]),
        Stage(stage_name("export", name), "export", name, deps=[_rel(p.trained), _rel(p.dataset)],
              params=stage_params(key, pipe, "export"),
              outs=[_rel(p.saved_model), _rel(p.float_tflite), _rel(p.baseline_metrics),
                    _rel(p.float_outputs)]),
    ]
    for i, v in enumerate(pipe.variants):
        stages.append(Stage(
            stage_name("quantize", name, v.name), "quantize", name, v.name, v.kind,
            deps=[_rel(f) for f in quantize_reads(p, v)],
            params=stage_params(key, pipe, "quantize", i) + _gate_params(key, pipe, i),
            outs=[variant_dirs[i]]))
    stages.append(Stage(
        stage_name("gate", name), "gate", name, deps=[_rel(p.baseline_metrics), *variant_dirs],
        params=stage_params(key, pipe, "gate"),
        outs=[_rel(p.gate), _rel(p.report)], metrics=[_rel(p.metrics)],
        plots=[_rel(p.plot), _rel(p.latency_plot)],
        plot_y=(pipe.evaluation.metric or TASK_DEFAULTS[pipe.evaluation.task]).rpartition(":")[2]))
    stages.append(Stage(
        stage_name("publish", name), "publish", name,
        deps=[_rel(p.gate), _rel(p.prepare_info), _rel(p.baseline_metrics), *variant_dirs],
        params=stage_params(key, pipe, "publish"),
        records=[_rel(p.publish_record)]))  # written after the push; small: git keeps it
    return stages


def conversion_reads(p: PipelinePaths, v: Any) -> list[Path]:
    """The files a variant's conversion reads: the converter's kinds the SavedModel,
    ai-edge-quantizer's and the shared calibration (variants/_calibrated.py) the float .tflite,
    QAT the trained model (and the SavedModel's signature only to cast integer-I/O
    calibration data). A conversion that reads nothing export writes can run beside export
    (flows/quantize.py)."""
    converter = "saved_model" in v.requires
    return [f for f, reads in (
        (p.trained, v.trains), (p.saved_model, converter and (v.needs_calibration
                                                            or not v.trains)),
        (p.float_tflite, (v.needs_calibration and not v.trains) or not converter),
        (p.calibration, v.needs_calibration), (p.dataset, True)) if reads]


def quantize_reads(p: PipelinePaths, v: Any) -> list[Path]:
    """The files a variant's quantize stage reads, so that nothing it does not read makes it
    stale (or has to be pulled onto a remote worker): its conversion's, and the baseline every
    variant is evaluated against."""
    return conversion_reads(p, v) + [p.baseline_metrics, p.float_outputs]


def all_stages(spec: Spec) -> list[Stage]:
    """Every pipeline's stages (the spec refuses names that collide when it loads)."""
    return [s for name in spec.pipelines for s in pipeline_stages(spec, name)]


def render(spec: Spec, spec_file: str, existing: str | None = None) -> str:
    """The text of dvc.yaml: ``existing`` (the current file) with quantflow's stages replaced
    by those of ``spec``; a pure function of both, so regenerating is a no-op."""
    ours = {s.name: s.to_dvc(spec_file) for s in all_stages(spec)}
    return dvcfile.merge(existing, ours, HEADER.format(spec=spec_file))


def write_dvc_yaml(spec: Spec, spec_path: Path, check: bool = False) -> bool:
    """Write dvc.yaml beside the spec (unless ``check``), keeping the team's own stages, and
    the toolchain file it refers to; return whether dvc.yaml differed."""
    workspace = Path(spec_path).parent
    target = workspace / "dvc.yaml"
    current = target.read_text(encoding="utf-8") if target.exists() else None
    text = render(spec, Path(spec_path).name, current)
    if not check:
        toolchain.write_toolchain(spec, workspace)
    if current == text:
        return False
    if not check:
        io.write_text(target, text)
    return True
