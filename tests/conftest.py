"""Shared fixtures. One Prefect test harness per session (it costs ~15 s to start)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from quantflow.core.tfenv import configure_env

configure_env()
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="session")
def prefect_harness():
    """A real Prefect API (SQLite, subprocess server) shared by every test that needs one."""
    from prefect.testing.utilities import prefect_test_harness

    from quantflow.orchestration.server import quiet_prefect_env

    quiet_prefect_env()
    with prefect_test_harness(server_startup_timeout=120):
        from prefect.settings import PREFECT_API_URL

        os.environ["PREFECT_API_URL"] = PREFECT_API_URL.value()
        try:
            yield PREFECT_API_URL.value()
        finally:
            os.environ.pop("PREFECT_API_URL", None)
