"""The bad-spec corpus: every file in tests/specs/bad is a pipelines.yaml a user could write.

Each file starts with `# expect: <message substring>`, `# path: <key path>` and
`# line: <line>` (a zero-byte file has no room for them and means "the file is empty").
`quantflow validate` and `quantflow run` must both exit 2 with a `file:line:col: path: message`
line that says so, and write nothing into the workspace.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from quantflow.cli import app
from quantflow.core.errors import Exit

CORPUS = Path(__file__).parent / "specs" / "bad"
FILES = sorted(CORPUS.glob("*.yaml"))
EMPTY = {"expect": "the file is empty", "path": "<document>", "line": "1"}


def expectations(path: Path) -> dict[str, str]:
    text = path.read_text()
    if not text:
        return EMPTY
    head = dict(re.findall(r"^# (expect|path|line): (.*)$", text, flags=re.M))
    assert set(head) == {"expect", "path", "line"}, f"{path.name}: incomplete header {head}"
    return head


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*")}


def matching_line(stderr: str, spec: Path, want: dict[str, str]) -> re.Match[str] | None:
    pattern = re.compile(rf"^{re.escape(str(spec))}:(?P<line>\d+):(?P<col>\d+): "
                         rf"{re.escape(want['path'])}: (?P<msg>.*)$", flags=re.M)
    return next((m for m in pattern.finditer(stderr) if want["expect"] in m["msg"]), None)


def test_corpus_is_big_enough_and_every_file_has_a_header():
    assert len(FILES) >= 40
    for f in FILES:
        expectations(f)


@pytest.mark.parametrize("bad", FILES, ids=[f.stem for f in FILES])
def test_bad_spec_exits_2_with_location_and_writes_nothing(bad: Path, tmp_path: Path):
    want = expectations(bad)
    ws = tmp_path / "ws"
    ws.mkdir()
    spec = ws / "pipelines.yaml"
    shutil.copyfile(bad, spec)
    before = snapshot(ws)
    runner = CliRunner()
    for args in (["validate", str(spec)], ["run", "--spec", str(spec)]):
        result = runner.invoke(app, args, catch_exceptions=False)
        assert result.exit_code == Exit.SPEC, (args[0], result.output)
        found = matching_line(result.stderr, spec, want)
        assert found, f"{args[0]}: no problem line for {want} in:\n{result.stderr}"
        lines = spec.read_text().splitlines() or [""]
        line, col = int(found["line"]), int(found["col"])
        assert line == int(want["line"]), found.group(0)
        assert 1 <= col <= len(lines[line - 1]) + 1, found.group(0)
        assert "nothing was run or written" in result.stderr
        assert "Traceback" not in result.output
        assert snapshot(ws) == before, f"{args[0]} wrote into the workspace"
