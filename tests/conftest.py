"""Shared fixtures. Models load once per test session; a Prefect server starts only for
the tests that ask for one (it takes ~25 s on these machines)."""

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from gpu_worker.best_of_n import BestOfN
from gpu_worker.settings import WorkerSettings


@pytest.fixture(autouse=True, scope="session")
def _own_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test writes to the user's real chunk cache (tests that need one set their own)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("NARRATOR_CACHE_DIR", str(tmp_path_factory.mktemp("default-cache")))
    yield
    patch.undo()


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Path]:
    """A chunk cache of the test's own, passed to the flows as settings (flows.services)."""
    from flows.services import configured
    from tasks.settings import NarratorSettings

    with configured(NarratorSettings(cache_dir=str(tmp_path / "cache"))):
        yield tmp_path / "cache"


def local_backend() -> Any:
    """The local backend the flows of this test use (the one open for its settings)."""
    from flows.services import services
    from tasks.backends.local import LocalBackend

    backend = services().backend
    assert isinstance(backend, LocalBackend)
    return backend


@pytest.fixture(scope="session")
def worker() -> BestOfN:
    """The embedded engine and Whisper tiny.en, as the local backend loads them."""
    return BestOfN.load(WorkerSettings())


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """A temporary Prefect API (SQLite) on 127.0.0.1 for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def start_server(app: Any) -> tuple[uvicorn.Server, threading.Thread, str]:
    """Serve an ASGI app on 127.0.0.1 (a free port) in a thread: the server, its thread and
    its base URL. Stop it with `stop_server`."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, f"http://127.0.0.1:{port}"


def stop_server(server: uvicorn.Server, thread: threading.Thread) -> None:
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def serve() -> Iterator[Callable[[Any], str]]:
    """Serve an ASGI app on 127.0.0.1 (a free port) in a thread; returns its base URL.
    Every server started is stopped when the test ends."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(app: Any) -> str:
        server, thread, url = start_server(app)
        servers.append((server, thread))
        return url

    yield start
    for server, thread in servers:
        stop_server(server, thread)


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 (the real S3 API is out of reach here); its URL. AWS
    credentials in the environment are test values, for this server only."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    yield f"http://{host}:{port}"
    server.stop()
