"""The typed request of one run: the spec loaded and validated once, the pipeline, the
workspace, the overrides and the paths. Everything downstream receives it (or the StepContext
slice of it); nothing else re-reads pipelines.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from quantflow.core.errors import Problem, SpecError
from quantflow.core.paths import PipelinePaths, pipeline_paths
from quantflow.core.spec import PipelineSpec, Spec
from quantflow.core.specload import ParsedSpec, parse_spec, validate

SPEC_SECTIONS = ("pipelines", "execution")  # the top-level keys of a spec


@dataclass(frozen=True)
class StepContext:
    """What a step receives: its pipeline's spec, the paths, and where the workspace is.

    Picklable and small, so Prefect tasks in spawned workers take it as an argument.
    """

    name: str
    workspace: Path
    pipeline: PipelineSpec
    paths: PipelinePaths


@dataclass(frozen=True)
class RunRequest:
    """One pipeline of one spec file, as this run sees it."""

    spec: Spec
    name: str
    workspace: Path
    spec_file: str = "pipelines.yaml"
    overrides: tuple[str, ...] = ()
    # The spec as the file says it (no overrides): what dvc.yaml and DVC's params describe.
    file_spec: Spec | None = None
    paths: PipelinePaths = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "paths", pipeline_paths(self.spec, self.name, self.workspace))

    @property
    def pipeline(self) -> PipelineSpec:
        return self.spec.pipelines[self.name]

    @property
    def matches_file(self) -> bool:
        """False when overrides change what the run does: DVC is then neither asked nor told."""
        return self.file_spec is None or self.file_spec == self.spec

    @property
    def step(self) -> StepContext:
        return StepContext(self.name, self.workspace, self.pipeline, self.paths)


def pipeline_overrides(overrides: list[str] | tuple[str, ...], pipeline: str) -> list[str]:
    """Anchor relative overrides at the run's pipeline: `train.epochs=3` of a `digits` run is
    `pipelines.digits.train.epochs=3`, so a trigger need not repeat the pipeline's name.

    Keys starting with a spec section stay as they are; so does anything that is not
    `key=value`, for the loader to reject in the user's own words.
    """
    out = []
    for o in overrides:
        key = o.split("=", 1)[0].strip()
        relative = "=" in o and key and key.split(".", 1)[0] not in SPEC_SECTIONS
        out.append(f"pipelines.{pipeline}.{o.lstrip()}" if relative else o)
    return out


def request_from(parsed: ParsedSpec, overrides: list[str] | tuple[str, ...], pipeline: str,
                 check_files: bool = True) -> RunRequest:
    """Validate ``parsed`` for one pipeline (raises SpecError), checking only its files (none
    without ``check_files``)."""
    anchored = pipeline_overrides(overrides, pipeline)
    spec = validate(parsed, anchored, pipelines=[pipeline] if check_files else []).spec
    if pipeline not in spec.pipelines:
        raise SpecError([Problem(str(parsed.path), f"pipelines.{pipeline}",
                                 f"no such pipeline; have: {', '.join(spec.pipelines)}")])
    file_spec = validate(parsed, [], pipelines=[]).spec if anchored else None
    return RunRequest(spec=spec, name=pipeline, workspace=parsed.path.parent.resolve(),
                      spec_file=parsed.path.name, overrides=tuple(anchored),
                      file_spec=file_spec)


def load_requests(spec_path: str | Path, overrides: list[str] | tuple[str, ...],
                  names: list[str] | None = None) -> list[RunRequest]:
    """One request per named pipeline (default: all), from one read of the file."""
    parsed = parse_spec(spec_path)
    if names is None:
        names = list(validate(parsed, [], pipelines=[]).spec.pipelines)
    problems: list[Problem] = []
    requests = []
    for name in names:
        try:
            requests.append(request_from(parsed, overrides, name))
        except SpecError as exc:
            problems += [p for p in exc.problems if p not in problems]
    if problems:
        raise SpecError(problems)
    return requests


def load_request(workspace: str | Path, spec_file: str, overrides: list[str] | tuple[str, ...],
                 pipeline: str, check_files: bool = True) -> RunRequest:
    """The request of one pipeline (what a flow run started by a deployment loads)."""
    return request_from(parse_spec(Path(workspace).resolve() / spec_file), overrides, pipeline,
                        check_files)
