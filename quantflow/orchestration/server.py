"""Which Prefect API a run talks to: PREFECT_API_URL when set, else one ephemeral server.

Prefect's own ephemeral mode starts a server per *process*; the spawned task workers would each
start another. We start one and export its URL so that the workers share it. The server lives
exactly as long as the run: it is in its own session, so the terminal's Ctrl-C (sent to the
run's process group) cannot kill it under a run that is still cleaning up; it gets
PR_SET_PDEATHSIG, so it dies with the run even when the run is SIGKILLed; and a watchdog stops
the run within seconds, naming the URL, if the server dies first (Prefect's client would retry
a dead server for minutes).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from quantflow.core.errors import Exit
from quantflow.orchestration import shutdown

SERVER_GONE_GRACE = 3.0  # without its server a run can record nothing: end it quickly
# Run before uvicorn (exec keeps the death signal): die with the parent, even if it is already
# gone by the time prctl runs.
_TIE = ("import ctypes, os, signal, sys\n"
        "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG\n"
        "os.getppid() == int(sys.argv[1]) or os._exit(1)\n"
        "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])\n")


def quiet_prefect_env() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
    # Step code logs to the "quantflow" logger; inside tasks Prefect ships it with the run.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "quantflow")


@contextmanager
def prefect_api() -> Iterator[str]:
    """Yield the API URL in use, starting (and later stopping) an ephemeral server if needed."""
    quiet_prefect_env()
    from prefect.settings import PREFECT_API_URL

    url = os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value()
    if url:
        os.environ["PREFECT_API_URL"] = url
        yield url
        return
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import temporary_settings

    server = SubprocessASGIServer()
    server._run_uvicorn_command = lambda: _launch(server)  # type: ignore[method-assign]
    stopping = threading.Event()
    try:
        server.start(timeout=180)  # Prefect's default 20 s is too short on a busy machine
        os.environ["PREFECT_API_URL"] = server.api_url
        threading.Thread(target=_watch, args=(server, stopping), daemon=True,
                         name="quantflow-server-watch").start()
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        stopping.set()
        if server.running:
            _flush_api_logs(timeout=2 if shutdown.requested() else 10)
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()


def _launch(server: Any) -> subprocess.Popen:
    """Prefect's own server command (SubprocessASGIServer._run_uvicorn_command, Prefect 3.8),
    started in a session of its own and tied to this process."""
    import prefect
    from prefect.settings import get_current_settings

    args = ["-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
            "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port",
            str(server.port), "--log-level", "error", "--lifespan", "on"]
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
           "PREFECT__SERVER_FINAL": "1",
           **get_current_settings().to_environment_variables(exclude_unset=True)}
    tie = ["-c", _TIE, str(os.getpid())] if sys.platform.startswith("linux") else []
    return subprocess.Popen([sys.executable, *tie, *args], env=env, start_new_session=True)


def _watch(server: Any, stopping: threading.Event) -> None:
    """If the server exits while the run still needs it, stop the run with one line."""
    while not stopping.wait(0.5):
        proc = server.server_process
        code = proc.poll() if proc is not None else None
        if code is not None and not stopping.is_set():
            shutdown.request(Exit.ERROR, f"the Prefect server at {server.api_url} went away "
                             f"(exit code {code}); stopped the run, steps that had not "
                             "finished are not recorded", grace=SERVER_GONE_GRACE)
            return


def _flush_api_logs(timeout: float) -> None:
    """Ship buffered run logs before the server goes."""
    from prefect.logging.handlers import APILogHandler, APILogWorker

    try:
        APILogWorker.drain_all(timeout=timeout)
    except Exception:  # noqa: BLE001 - best effort; the run itself is finished
        pass
    # Later lines (the server's own "Stopping ...") must not be shipped to a stopped server.
    for name in ("prefect", ""):
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if isinstance(h, APILogHandler)]:
            logger.removeHandler(handler)
