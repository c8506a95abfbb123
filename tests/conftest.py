"""Shared fixtures. Models load once per test session; a Prefect server starts only for
the tests that ask for one (it takes ~25 s on these machines)."""

from collections.abc import Iterator

import pytest

from gpu_worker.generate import Worker
from gpu_worker.settings import WorkerSettings


@pytest.fixture(scope="session")
def worker() -> Worker:
    """The embedded engine and Whisper tiny.en, as the local backend loads them."""
    return Worker.load(WorkerSettings())


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """A temporary Prefect API (SQLite) on 127.0.0.1 for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
