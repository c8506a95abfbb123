"""Shared fixtures. Models load once per test session; a Prefect server starts only for
the tests that ask for one (it takes ~25 s on these machines)."""

from collections.abc import Iterator

import pytest

from gpu_worker.generate import Worker
from gpu_worker.settings import WorkerSettings


@pytest.fixture(autouse=True, scope="session")
def _own_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test writes to the user's real chunk cache (tests that need one set their own)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("NARRATOR_CACHE_DIR", str(tmp_path_factory.mktemp("default-cache")))
    yield
    patch.undo()


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
