"""What counts as stale, for real: git + dvc in a temporary repository (no TensorFlow).

An upgrade of quantflow's code or of a package re-runs exactly the stages it affects, and a
team's own stages in dvc.yaml survive `quantflow dvc` and run first under `dvc repro`.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from quantflow.core.request import load_request
from quantflow.orchestration.plan import Plan
from quantflow.steps import STAGES
from quantflow.versioning import toolchain
from quantflow.versioning.dvc import Stale, commit_run, stale_stages
from tests.integration.test_dvc import GITIGNORE, ROOT, commit_all, fake_outputs, ran, sh, status
from tests.tiny import tiny_spec, write_workspace

pytestmark = pytest.mark.integration
VARIANTS = [{"name": "dr", "kind": "dynamic_range"}, {"name": "i8", "kind": "int8"},
            {"name": "q", "kind": "qat"}]
QUANTIZE = {"tiny-quantize-dr", "tiny-quantize-i8", "tiny-quantize-q"}


def make_repo(root: Path, spec: dict, monkeypatch) -> Path:
    """A git + DVC repo configured like this project; HOME (the default remote) in tmp."""
    home = root.parent / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "quantflow test")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "test@quantflow.invalid")
    write_workspace(root, spec)
    sh(root, "git", "init", "-q")
    sh(root, "dvc", "init", "-q")
    shutil.copy(ROOT / ".dvc" / "config", root / ".dvc" / "config")
    (root / ".gitignore").write_text(GITIGNORE)
    return root


def record_all(ws: Path) -> None:
    request = load_request(ws, "pipelines.yaml", [], "tiny")
    steps = Plan(request, set(STAGES), [v.name for v in request.pipeline.variants]).describe()
    commit_run(request, steps, push_targets=None)


# ------------------------------------------------------------------- upgrades (toolchain file)
BUMPS = {  # what is faked -> the stages DVC reports (their own change; gate/publish follow)
    "quantflow 0.2.0": set(["tiny-prepare", "tiny-train", "tiny-export", "tiny-gate",
                            "tiny-publish"]) | QUANTIZE,
    "tensorflow": {"tiny-train", "tiny-export"} | QUANTIZE,
    "tf-keras": {"tiny-train", "tiny-export"} | QUANTIZE,
    "ai-edge-litert": {"tiny-export"} | QUANTIZE,
    "ai-edge-quantizer": QUANTIZE,
    "tensorflow-model-optimization": {"tiny-quantize-q"},
    "code of the int8 converter": {"tiny-quantize-i8"},
    "code of the gate": {"tiny-gate"},
}


def _fake(monkeypatch, bump: str) -> None:
    """Pretend the installation changed, through the lookups the toolchain file is made of."""
    if bump.startswith("quantflow "):
        monkeypatch.setattr(toolchain, "quantflow_version", lambda: bump.split()[1])
    elif bump.startswith("code of the "):
        step, kind = ("quantize", "int8") if "int8" in bump else ("gate", None)
        real = toolchain.code_hash
        monkeypatch.setattr(toolchain, "code_hash", lambda s, k=None: "0" * 16
                            if (s, k) == (step, kind) else real(s, k))
    else:
        real_version = toolchain.dist_version
        dists = toolchain.DISTRIBUTIONS.get(bump, (bump,))
        monkeypatch.setattr(toolchain, "dist_version", lambda d: "99.0.0" if d in dists
                            else real_version(d))


def test_an_upgrade_reruns_exactly_the_stages_it_affects(tmp_path, monkeypatch):
    ws = make_repo(tmp_path / "ws", tiny_spec(variants=VARIANTS), monkeypatch)
    sh(ws, "quantflow", "dvc")
    commit_all(ws, "tiny pipeline")
    fake_outputs(ws)
    record_all(ws)
    assert status(ws) == {}
    downstream = {"tiny-gate", "tiny-publish"}
    for bump, expected in BUMPS.items():
        with monkeypatch.context() as m:
            _fake(m, bump)
            # what `quantflow run` does before it plans: rewrite the file, then ask DVC
            stale = stale_stages(load_request(ws, "pipelines.yaml", [], "tiny"))
            assert set(status(ws)) == expected, bump  # DVC's own view, from a `dvc status`
        names = {f"tiny-{s}" for s in stale.stages - {"quantize"}} | \
            {f"tiny-quantize-{v}" for v in stale.variants}
        assert names == expected | downstream, bump
        # back to the real installation: nothing is stale again
        assert stale_stages(load_request(ws, "pipelines.yaml", [], "tiny")) == Stale(set(), [])
    assert status(ws) == {}


def test_a_fresh_clone_is_stale_until_quantflow_dvc_writes_its_toolchain_file(tmp_path,
                                                                            monkeypatch):
    ws = make_repo(tmp_path / "ws", tiny_spec(variants=VARIANTS[:1]), monkeypatch)
    sh(ws, "quantflow", "dvc")
    fake_outputs(ws)
    record_all(ws)
    commit_all(ws, "recorded")
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(ws), str(clone))
    assert not (clone / toolchain.TOOLCHAIN_FILE).exists(), "git-ignored: machine state"
    assert "deleted" in sh(clone, "dvc", "status")
    sh(clone, "quantflow", "dvc")
    assert (clone / toolchain.TOOLCHAIN_FILE).read_text() == \
        (ws / toolchain.TOOLCHAIN_FILE).read_text()


# ------------------------------------------------------------------- a team's own stages
MAKE_DATA = """\
import numpy as np
rng = np.random.default_rng({seed})
np.savez("data/digits.npz", x=rng.random((1000, 64), dtype=np.float32),
         y=rng.integers(0, 10, 1000))
"""
TEAM_STAGES = {
    "make-data": {"cmd": "python make_data.py", "deps": ["make_data.py"],
                  "outs": ["data/digits.npz"]},
    "my-train": {"cmd": "python my_train.py", "deps": ["my_train.py", "data/digits.npz"],
                 "outs": ["models/mine.keras"]},
}


def test_a_teams_stages_survive_regeneration_and_run_first(tmp_path, monkeypatch):
    spec = tiny_spec(dataset={"source": "npz", "path": "data/digits.npz", "train_size": 600,
                              "test_size": 200}, model={"path": "models/mine.keras"},
                     variants=VARIANTS[:1])
    ws = make_repo(tmp_path / "ws", spec, monkeypatch)
    (ws / "data").mkdir()
    (ws / "make_data.py").write_text(MAKE_DATA.format(seed=0))
    (ws / "my_train.py").write_text("import os\nos.makedirs('models', exist_ok=True)\n"
                                    "open('models/mine.keras', 'w').write('a model')\n")
    (ws / "dvc.yaml").write_text("# our own stages come first\n"
                                 + yaml.safe_dump({"stages": TEAM_STAGES}, sort_keys=False))
    sh(ws, "quantflow", "dvc")
    stages = yaml.safe_load((ws / "dvc.yaml").read_text())["stages"]
    assert list(stages)[:2] == ["make-data", "my-train"]
    assert {n: stages[n] for n in TEAM_STAGES} == TEAM_STAGES, "kept as written"
    assert "# our own stages come first" in (ws / "dvc.yaml").read_text()
    assert "models/mine.keras" in stages["tiny-train"]["deps"]
    commit_all(ws, "team stages + tiny")

    # dvc repro chains them: the data before prepare, the model before train
    assert ran(sh(ws, "dvc", "repro", "tiny-prepare")) == ["make-data", "tiny-prepare"]
    dag = sh(ws, "dvc", "dag", "--dot", "tiny-train")  # training needs TensorFlow: the graph
    assert '"my-train" -> "tiny-train"' in dag and '"make-data" -> "my-train"' in dag, dag
    assert set(status(ws, "tiny-prepare")) == set(), "prepare and its upstream are recorded"

    # editing the pipeline regenerates ours only; an edit of theirs re-runs theirs and ours
    edit = yaml.safe_load((ws / "pipelines.yaml").read_text())
    edit["pipelines"]["tiny"]["variants"].append({"name": "f16", "kind": "float16"})
    (ws / "pipelines.yaml").write_text(yaml.safe_dump(edit, sort_keys=False))
    sh(ws, "quantflow", "dvc")
    stages = yaml.safe_load((ws / "dvc.yaml").read_text())["stages"]
    assert {n: stages[n] for n in TEAM_STAGES} == TEAM_STAGES and "tiny-quantize-f16" in stages
    (ws / "make_data.py").write_text(MAKE_DATA.format(seed=1))
    assert ran(sh(ws, "dvc", "repro", "tiny-prepare")) == ["make-data", "tiny-prepare"]
    assert status(ws, "tiny-prepare") == {}
