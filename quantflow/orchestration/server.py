"""Which Prefect API a run talks to: PREFECT_API_URL when set, else one ephemeral server.

Prefect's own ephemeral mode starts a server per *process*; the spawned task workers would each
start another. We start one and export its URL so that the workers share it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager


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
    server.start(timeout=180)  # Prefect's default 20 s is too short on a cold, busy machine
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        _flush_api_logs()
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()


def _flush_api_logs() -> None:
    """Ship buffered run logs before the server goes."""
    from prefect.logging.handlers import APILogHandler, APILogWorker

    try:
        APILogWorker.drain_all(timeout=10)
    except Exception:  # noqa: BLE001 - best effort; the run itself is finished
        pass
    # Later lines (the server's own "Stopping ...") must not be shipped to a stopped server.
    for name in ("prefect", ""):
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if isinstance(h, APILogHandler)]:
            logger.removeHandler(handler)
