"""The run log: all a run says, tracebacks included, in one file; the terminal gets one line per
problem and that file's path.

`quantflow run` opens ``artifacts/<pipeline>/logs/run-<UTC time>-<pid>.log`` for each pipeline
it runs (the newest ``KEEP`` stay). The flow's process writes to it through a FileHandler. Each
task worker (quantflow.orchestration.pool) points its fd 1 and 2 at it, so TensorFlow's C++
notices (cuInit, XNNPACK), the converter's chatter and Python warnings land there; its
``quantflow`` log records go up its pipe to the flow's process, which files them and shows
them on the terminal through Prefect's console handler. The terminal is spared tracebacks and
Prefect's repeats of a failure ("failed with exception", "Finished in state Failed"): quantflow
prints its own line.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

ENV = "QUANTFLOW_RUN_LOG"  # tells the spawned task workers where the log is
KEEP = 20
FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
_ENGINE_MODULES = {"task_engine", "flow_engine"}  # Prefect's state reports come from these
_FILE_ONLY = logging.getLogger("quantflow.runlog")  # tracebacks for the file, not the terminal
_FILE_ONLY.propagate = False
_FILE_ONLY.setLevel(logging.INFO)
_last: list[Path] = []  # the log this process opened last, for the line a stopped run ends with


def shown(path: str | Path) -> str:
    """A path as the terminal shows it: relative to the working folder when inside it."""
    rel = os.path.relpath(path)
    return str(path) if rel.startswith("..") else rel


def where(last: bool = False) -> str:
    """The suffix for a problem line, ' (log: <path>)', while a run log is open (``last``: or
    the one this process opened last); else ''."""
    path = os.environ.get(ENV) or (_last[0] if last and _last else None)
    return f" (log: {shown(path)})" if path else ""


@contextmanager
def run_log(logs_dir: Path) -> Iterator[Path]:
    """A new log file for one pipeline's run, for this process and the workers it spawns."""
    logs_dir.mkdir(parents=True, exist_ok=True)
    for old in sorted(logs_dir.glob("run-*.log"))[: -(KEEP - 1)]:
        old.unlink(missing_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = logs_dir / f"run-{stamp}-{os.getpid()}.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    _FILE_ONLY.addHandler(handler)
    os.environ[ENV] = str(path)
    _last[:] = [path]
    try:
        yield path
    finally:
        os.environ.pop(ENV, None)
        root.removeHandler(handler)
        _FILE_ONLY.removeHandler(handler)
        handler.close()


def log_exception(exc: BaseException, what: str) -> None:
    """The traceback the terminal line leaves out goes to the file."""
    _FILE_ONLY.error(what, exc_info=(type(exc), exc, exc.__traceback__))


class _NoTraceback(logging.Formatter):
    """The console's formatter without exc_info/stack: the file keeps those."""

    def __init__(self, inner: logging.Formatter | None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def _for_terminal(record: logging.LogRecord) -> bool:
    """Prefect's own failure reports repeat what quantflow's line says; they stay in the file.
    Its progress ("Finished in state Completed()") stays on the terminal."""
    if record.module not in _ENGINE_MODULES:
        return True
    if record.levelno >= logging.WARNING:
        return False
    message = record.getMessage()
    return not (message.startswith("Finished in state") and "Completed" not in message)


def quiet_console(stream: TextIO | None = None) -> None:
    """Apply the terminal rules to Prefect's console handler (and point it at ``stream``).
    Called in the flow's process; workers have no Prefect."""
    from prefect.logging.configuration import ensure_logging_setup
    from prefect.logging.handlers import PrefectConsoleHandler

    ensure_logging_setup()  # Prefect configures logging lazily; its handlers must exist now
    for handler in logging.getLogger().handlers:
        if not isinstance(handler, PrefectConsoleHandler):
            continue
        if not isinstance(handler.formatter, _NoTraceback):
            handler.addFilter(_for_terminal)
            handler.setFormatter(_NoTraceback(handler.formatter))
        if stream is not None:
            handler.setStream(stream)
            handler.console.file = stream


def quiet_resource_tracker() -> None:
    """Workers killed on Ctrl-C leave semaphores that multiprocessing's resource tracker (a
    process started with this environment) frees after the run, warning on the terminal."""
    quiet = "ignore:resource_tracker:UserWarning"
    current = os.environ.get("PYTHONWARNINGS", "")
    if quiet not in current:
        os.environ["PYTHONWARNINGS"] = f"{current},{quiet}" if current else quiet


def route_worker_output() -> None:
    """Task-worker initializer: fd 1 and 2 (C++ notices, warnings, stray prints, other
    libraries' log records) go to the run log; the worker's ``quantflow`` records reach the
    terminal through the flow's process (worker.serve). Outside `quantflow run` (a deployment's
    run, `quantflow step`) there is no run log and nothing changes."""
    path = os.environ.get(ENV)
    if not path:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    to_file = logging.StreamHandler(sys.stderr)  # fd 2 is the log now
    to_file.setFormatter(logging.Formatter(FORMAT))
    logging.getLogger().addHandler(to_file)


_LOCATION = re.compile(r"(?:<[^>]+>|[\w./-]+):\d+(?::\d+)?: $")  # "<string>:1:1: "


def _without_loc(error: str) -> str:
    """ "error: loc(callsite(fused[...] at ...)): text" -> "error: text": the MLIR location
    some converter builds print inside the line (balanced parentheses, so not a regex)."""
    prefix = "error: loc("
    if not error.startswith(prefix):
        return error
    depth = 0
    for i in range(len(prefix) - 1, len(error)):
        depth += {"(": 1, ")": -1}.get(error[i], 0)
        if depth == 0:
            return "error: " + error[i + 1:].removeprefix(":").strip()
    return error


def one_line(text: str, limit: int = 1000) -> str:
    """A message for one terminal line. Converter (MLIR) errors are many lines of locations,
    notes and echoed source around a few ``error:`` lines: keep those, without locations, after
    what precedes the first ("export failed: ConverterError: ")."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [_without_loc(line[line.index("error:"):]) for line in lines if "error:" in line]
    head = ""
    if errors and "error:" in lines[0]:
        head = _LOCATION.sub("", lines[0][: lines[0].index("error:")])
    out = head + " | ".join(dict.fromkeys(errors or lines))
    return out if len(out) <= limit else out[: limit - 1] + "…"
