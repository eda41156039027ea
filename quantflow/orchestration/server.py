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
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
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


class Api:
    """The API a run talks to. ``url()`` returns it once it is up: an ephemeral server starts
    in a thread, so the run's other fixed costs (the deep check's TensorFlow import) overlap
    the ~12 s it takes, and the URL is only exported (to this process's settings and to the
    workers' environment) when it answers; its port may change while it starts."""

    def __init__(self, url: str | None = None, server: Any = None,
                 ready: Callable[[str], None] | None = None) -> None:
        self._url, self._server, self._ready, self._error = url, server, ready, None
        self._started = threading.Event()
        if server is None:
            self._started.set()

    def wait(self, timeout: float = 180) -> None:
        """The thread's body: poll the server's health until it answers. Prefect's default
        20 s is too short on a busy machine. (The process itself is launched by the run's
        thread: PR_SET_PDEATHSIG fires when the *thread* that started it ends.)"""
        import httpx

        server, deadline = self._server, time.monotonic() + timeout
        try:
            with httpx.Client() as client:
                while True:
                    code = server.server_process.poll()
                    if code is not None:
                        raise RuntimeError(f"the Prefect server on port {server.port} exited "
                                           f"with code {code} while starting")
                    try:
                        if client.get(f"{server.api_url}/health").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the Prefect server on port {server.port} did not "
                                           f"answer within {timeout:g} s")
                    time.sleep(0.1)
            self._url = server.api_url
        except BaseException as exc:  # noqa: BLE001 - raised by url() in the run's thread
            self._error = exc
        finally:
            self._started.set()

    def url(self) -> str:
        self._started.wait()
        if self._error is not None:
            raise self._error
        assert self._url is not None
        if self._ready is not None:
            self._ready(self._url)
            self._ready = None
        return self._url


@contextmanager
def prefect_api() -> Iterator[Api]:
    """Yield the API in use: PREFECT_API_URL when set, else an ephemeral server that starts
    now, in the background, and stops when the block ends."""
    quiet_prefect_env()
    from prefect.settings import PREFECT_API_URL

    url = os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value()
    if url:
        os.environ["PREFECT_API_URL"] = url
        yield Api(url)
        return
    from prefect.server.api.server import SubprocessASGIServer, subprocess_server_logger
    from prefect.settings import temporary_settings

    server = SubprocessASGIServer()
    stopping = threading.Event()
    with ExitStack() as stack:

        def ready(url: str) -> None:
            os.environ["PREFECT_API_URL"] = url
            stack.enter_context(temporary_settings({PREFECT_API_URL: url}))
            threading.Thread(target=_watch, args=(server, stopping), daemon=True,
                             name="quantflow-server-watch").start()

        server.port = server.find_available_port()
        subprocess_server_logger.info("Starting temporary server on %s", server.address)
        server.running, server.server_process = True, _launch(server)
        api = Api(server=server, ready=ready)
        starting = threading.Thread(target=api.wait, daemon=True,
                                    name="quantflow-server-start")
        starting.start()
        try:
            yield api
        finally:
            stopping.set()
            if starting.is_alive():
                server.server_process.kill()  # the run ended before its server was up
            starting.join(timeout=10)
            if server.running and api._url is not None:  # noqa: SLF001
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
