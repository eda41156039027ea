"""`quantflow init`: make a bare folder a project in which `quantflow run` caches its steps.

Without git and DVC, `quantflow run` still runs, but every stage every time: DVC is what knows
what is stale. So init makes the folder a git + DVC repository, ignores what DVC caches while
keeping the small records git should hold, and writes a commented spec for the model and data
given, its JSON Schema and dvc.yaml. It never overwrites a spec.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from quantflow.core import io
from quantflow.core.errors import QuantflowError, UserError
from quantflow.core.paths import SPEC_FILE, PipelinePaths
from quantflow.core.spec import Spec
from quantflow.orchestration.init_spec import dataset_section, model_section, render_spec

SCHEMA_FILE = "pipelines.schema.json"


def pipeline_name(model: Path | None, data: Path | None) -> str:
    """Named after the data (else the model): `quantflow run <name>` reads naturally."""
    source = data or model
    if source is None:
        return "digits"
    name = re.sub(r"[^A-Za-z0-9_-]", "_", source.stem if source.suffix else source.name)
    return name[:64] if re.match(r"[A-Za-z]", name) else f"p_{name}"[:64]


def _git(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True,
                              timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise QuantflowError(f"git {' '.join(args)} failed: {exc} (is git installed?)") from None


def ensure_git(folder: Path) -> tuple[Path, str]:
    """The git work tree holding ``folder`` (made with `git init` if there is none)."""
    top = _git(folder, "rev-parse", "--show-toplevel")
    if top.returncode == 0:
        root = top.stdout.strip()
        return Path(root).resolve(), f"git: already a repository ({root})"
    made = _git(folder, "init", "-q")
    if made.returncode != 0:
        raise QuantflowError(f"git init failed: {made.stderr.strip()}")
    return folder, "git init: done"


def ensure_dvc(folder: Path, git_root: Path) -> str:
    """`dvc init` (with --subdir when the git repository starts above ``folder``), as its own
    process: the DVC of this environment, and none of its logging set up in ours."""
    if (folder / ".dvc").is_dir():
        return "dvc: already initialised"
    subdir = ["--subdir"] if git_root != folder else []
    try:
        made = subprocess.run([sys.executable, "-m", "dvc", "init", "-q", *subdir], cwd=folder,
                              capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        raise QuantflowError(f"dvc init failed: {exc}") from None
    if made.returncode != 0:
        raise QuantflowError(f"dvc init failed: {(made.stderr or made.stdout).strip()}")
    return "dvc init: done" + (" (--subdir)" if subdir else "")


def gitignore_lines(spec: Spec) -> list[str]:
    """DVC caches the artifacts (so git must not hold them), the registry is what publishing
    builds, while DVC's `cache: false` records (metrics, plot data, publish record) belong in
    git. DVC keeps its own cache, tmp and config.local out of git in .dvc/.gitignore; .dvc/,
    .dvcignore, dvc.yaml and dvc.lock must be committed, so nothing here names them."""
    lines = []
    for pipe in spec.pipelines.values():
        every = PipelinePaths(Path("."), "*", spec.execution.artifacts, pipe.publish.registry)
        records = [every.metrics, every.plot, every.publish_record]
        lines += [f"/{every.root.parent.as_posix()}/**", f"!/{every.root.as_posix()}/",
                  *(f"!/{r.as_posix()}" for r in records), f"/{pipe.publish.registry}/"]
    return [*dict.fromkeys(lines), "/.venv/", "/.prefect/", "__pycache__/"]


def update_gitignore(folder: Path, spec: Spec) -> str:
    """Add the lines .gitignore lacks; a user's own lines stay."""
    path = folder / ".gitignore"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    have = set(text.splitlines())
    missing = [line for line in gitignore_lines(spec) if line not in have]
    if missing:
        head = "" if not text or text.endswith("\n") else "\n"
        io.write_text(path, text + head + "# quantflow (see docs/DVC.md)\n"
                      + "\n".join(missing) + "\n")
    return f".gitignore: {len(missing)} line(s) added"


def _spec_path_of(folder: Path, given: Path) -> str:
    """As the spec should name it: relative to the project when inside it, else absolute."""
    real = given.resolve()
    return real.relative_to(folder).as_posix() if folder in real.parents else real.as_posix()


def write_spec(folder: Path, model: Path | None, data: Path | None) -> tuple[Spec, str]:
    """Write the commented spec, keep it only if `quantflow validate` would accept it."""
    from quantflow.core.specload import SpecError, load_spec

    spec_path = folder / SPEC_FILE
    name = pipeline_name(model, data)
    dataset = dataset_section(data, _spec_path_of(folder, data) if data else None)
    model_yaml = model_section(model, _spec_path_of(folder, model) if model else None)
    io.write_text(spec_path, render_spec(name, dataset, model_yaml, SCHEMA_FILE))
    try:
        spec = load_spec(spec_path).spec
    except SpecError:
        spec_path.unlink()
        raise
    return spec, f"wrote {SPEC_FILE}: pipeline {name!r}"


def init_project(folder: Path, model: Path | None = None, data: Path | None = None) -> list[str]:
    """Set ``folder`` up; return one line per thing done. Refuses (UserError) to overwrite a
    spec, and checks the spec before git or DVC is touched, so a refusal changes nothing."""
    from quantflow.core.schema import json_schema
    from quantflow.versioning.dvcgen import write_dvc_yaml

    folder = folder.resolve()
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder")
    if (folder / SPEC_FILE).exists():
        raise UserError(f"{folder / SPEC_FILE} already exists; quantflow init does not "
                        "overwrite it (edit it, or move it away and run init again)")
    spec, wrote = write_spec(folder, model, data)
    git_root, git_done = ensure_git(folder)
    done = [git_done, ensure_dvc(folder, git_root), wrote]
    io.write_text(folder / SCHEMA_FILE, json.dumps(json_schema(), indent=2) + "\n")
    write_dvc_yaml(spec, folder / SPEC_FILE)
    done += [f"wrote {SCHEMA_FILE}, dvc.yaml", update_gitignore(folder, spec)]
    here = "" if folder == Path.cwd() else f"cd {os.path.relpath(folder)} && "
    return [*done, f"next: {here}quantflow run, then git add -A && git commit"]
