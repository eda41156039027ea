"""The toolchain file: which stages an upgrade of quantflow's code or of a package affects."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest
import yaml

from quantflow.core.specload import load_spec
from quantflow.versioning import toolchain
from quantflow.versioning.dvcgen import pipeline_stages
from tests.tiny import tiny_spec, write_workspace

KINDS = ("dynamic_range", "float16", "int8_float_fallback", "int8", "int16x8", "qat")
# import name -> the package key of the toolchain file
IMPORTS = {"tensorflow": "tensorflow", "tf_keras": "tf-keras",
           "tensorflow_model_optimization": "tensorflow-model-optimization",
           "ai_edge_litert": "ai-edge-litert", "ai_edge_quantizer": "ai-edge-quantizer"}


def test_each_stage_tracks_the_packages_docs_dvc_md_lists(tmp_path):
    raw = tiny_spec(variants=[{"name": "dr", "kind": "dynamic_range"},
                              {"name": "q", "kind": "qat"}])
    stages = pipeline_stages(load_spec(write_workspace(tmp_path, raw)).spec, "tiny")
    base = ["quantflow.version"]
    quantize = ["tensorflow", "tf-keras", "ai-edge-litert", "ai-edge-quantizer"]
    assert {s.name: s.toolchain for s in stages} == {
        "tiny-prepare": base + ["quantflow.code.prepare"],
        "tiny-train": base + ["quantflow.code.train", "packages.tensorflow", "packages.tf-keras"],
        "tiny-export": base + ["quantflow.code.export", "packages.tensorflow",
                               "packages.tf-keras", "packages.ai-edge-litert"],
        "tiny-quantize-dr": base + ["quantflow.code.quantize-dynamic_range"]
        + [f"packages.{p}" for p in quantize],
        "tiny-quantize-q": base + ["quantflow.code.quantize-qat"]
        + [f"packages.{p}" for p in quantize + ["tensorflow-model-optimization"]],
        "tiny-gate": base + ["quantflow.code.gate"],
        "tiny-publish": base + ["quantflow.code.publish"],
    }


def _toolchain_imports(module_code: str) -> set[str]:
    tree = ast.parse(module_code)
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    return {IMPORTS[m.split(".")[0]] for m in names if m.split(".")[0] in IMPORTS}


@pytest.mark.parametrize("step, kind", [("train", None), ("export", None)]
                         + [("quantize", k) for k in KINDS])
def test_the_table_covers_every_package_the_stages_code_imports(step, kind):
    """A converter that starts importing a package must list it (prepare and publish reach
    TensorFlow only through the keras dataset source and the manifest's version record)."""
    used = set()
    for name in toolchain.modules(step, kind):
        path = toolchain._file(name)
        used |= _toolchain_imports(path.read_text(encoding="utf-8"))
    assert used <= set(toolchain.packages(step, kind)), (step, kind)


@pytest.fixture
def source(tmp_path, monkeypatch) -> Path:
    """A copy of the quantflow package that the hashes read, to edit freely."""
    root = tmp_path / "quantflow"
    shutil.copytree(toolchain.ROOT, root, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(toolchain, "ROOT", root)
    toolchain._parsed.cache_clear()
    yield root
    toolchain._parsed.cache_clear()


def _hashes() -> dict[str, str]:
    toolchain._parsed.cache_clear()
    pairs = [(s, None) for s in ("prepare", "train", "export", "gate", "publish")]
    pairs += [("quantize", k) for k in KINDS]
    return {toolchain.code_key(s, k): toolchain.code_hash(s, k) for s, k in pairs}


def _append_code(path: Path) -> None:
    path.write_text(path.read_text() + "\nFIXED = 1  # a fix\n")


def _changed(before: dict[str, str]) -> set[str]:
    after = _hashes()
    return {k for k in before if after[k] != before[k]}


def test_code_changes_go_to_the_stages_that_run_that_code(source):
    before = _hashes()
    _append_code(source / "variants" / "int8.py")
    assert _changed(before) == {"quantize-int8"}

    before = _hashes()
    _append_code(source / "variants" / "_common.py")
    assert _changed(before) == {f"quantize-{k}" for k in KINDS}

    before = _hashes()
    _append_code(source / "domain" / "gate.py")
    # publish imports the gate's loader; quantize judges a searching kind's candidates with
    # the gate's own decision (steps/quantize.judge), so it runs that code too
    assert _changed(before) == {"gate", "publish"} | {f"quantize-{k}" for k in KINDS}

    before = _hashes()
    _append_code(source / "core" / "spec.py")
    assert _changed(before) == set(before), "every stage reads the spec models"


def test_comments_docstrings_and_layout_change_nothing(source):
    before = _hashes()
    path = source / "variants" / "qat.py"
    text = path.read_text()
    tree = ast.parse(text)
    first = next(n for n in tree.body if isinstance(n, ast.FunctionDef))
    doc = ast.get_docstring(first, clean=False)
    edited = text.replace(doc, "Reworded entirely.", 1) if doc else text
    path.write_text("# a new comment\n" + edited.replace("\n\n\n", "\n\n\n\n") + "\n# end\n")
    assert _changed(before) == set()


def test_the_file_lists_every_key_its_stages_track(tmp_path, monkeypatch):
    monkeypatch.setattr(toolchain, "dist_version", lambda d: {"tensorflow-cpu": "2.21.0"}.get(d))
    spec = load_spec(write_workspace(tmp_path, tiny_spec())).spec
    assert toolchain.write_toolchain(spec, tmp_path) is True
    assert toolchain.write_toolchain(spec, tmp_path) is False
    doc = yaml.safe_load((tmp_path / toolchain.TOOLCHAIN_FILE).read_text())
    assert doc["packages"]["tensorflow"] == "tensorflow-cpu==2.21.0"
    assert doc["packages"]["tf-keras"] == "not installed"
    for stage in pipeline_stages(spec, "tiny"):
        for key in stage.toolchain:
            node = doc
            for part in key.split("."):
                node = node[part]  # KeyError: DVC would refuse the stage
