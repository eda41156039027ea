"""`quantflow report`: re-render report.html of each pipeline from its artifacts.

Nothing runs and no data file is read (a clone with `dvc pull`ed artifacts can render it); the
spec is read once, for the artifact paths and the spec hash the page shows.
"""

from __future__ import annotations

import webbrowser
from pathlib import Path

from rich.console import Console

from quantflow.core.errors import Exit
from quantflow.core.request import RunRequest
from quantflow.core.spec import Spec
from quantflow.domain.report_page import rerender


def render_reports(spec: Spec, spec_path: Path, names: list[str], open_: bool, out: Console,
                   err: Console) -> int:
    """Exit 2 for an unknown pipeline, 1 when a pipeline has no gate result to show."""
    unknown = [n for n in names if n not in spec.pipelines]
    if unknown:
        err.print(f"unknown pipeline(s) {unknown}; {spec_path} has: {', '.join(spec.pipelines)}",
                  markup=False)
        return Exit.SPEC
    code = Exit.OK
    for name in names or list(spec.pipelines):
        req = RunRequest(spec=spec, name=name, workspace=spec_path.parent.resolve(),
                         spec_file=spec_path.name)
        try:
            page = rerender(req.step)
        except FileNotFoundError as exc:
            err.print(f"{name}: {exc}", markup=False)
            code = Exit.ERROR
            continue
        out.print(f"{name}: wrote {page}", markup=False)
        if open_:
            webbrowser.open(page.resolve().as_uri())
    return code
