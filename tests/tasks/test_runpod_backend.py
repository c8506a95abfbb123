"""RunPodBackend against the local RunPod-compatible endpoint (real HTTP, real handler)."""

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import pytest
from pydantic import SecretStr

from gpu_worker.best_of_n import BestOfN
from gpu_worker.errors import InputError, PermanentError, TransientError
from gpu_worker.handler import handle
from gpu_worker.schema import GenerateRequest
from gpu_worker.settings import WorkerSettings
from local_endpoint.faults import FaultProfile
from local_endpoint.server import Endpoint, EndpointConfig
from tasks.backends.runpod import RunPodBackend
from tasks.settings import NarratorSettings

KEY = "test-key-5678"
REQUEST = GenerateRequest(text="The beam swept out across the water.", n_candidates=1)


@pytest.fixture
def endpoint(worker: BestOfN) -> Endpoint:
    return Endpoint(EndpointConfig(api_key=KEY), [partial(handle, worker=worker)])


@pytest.fixture
def connect(endpoint: Endpoint, serve: Callable[[Any], str]) -> Callable[..., RunPodBackend]:
    base = serve(endpoint.app)

    def backend(key: str = KEY, **settings: Any) -> RunPodBackend:
        config = NarratorSettings(
            endpoint_limit="",  # no Prefect server in these tests
            backend="runpod",
            runpod_endpoint_id="local",
            runpod_base_url=f"{base}/v2",
            runpod_api_key=SecretStr(key),
            **settings,
        )
        return RunPodBackend(config, key, WorkerSettings())

    return backend


def test_a_chunk_is_generated_on_the_endpoint(
    connect: Callable[..., RunPodBackend], worker: BestOfN
) -> None:
    result = connect().generate(REQUEST)
    assert result.passed
    assert result.audio_base64 == worker.run(REQUEST).audio_base64  # same seeds, same audio


def test_a_refused_key_is_permanent_and_says_so(connect: Callable[..., RunPodBackend]) -> None:
    with pytest.raises(PermanentError, match=r"RunPod refused the API key \(HTTP 401\)"):
        connect(key="not-the-key").generate(REQUEST)


def test_503_then_success_is_retried(
    connect: Callable[..., RunPodBackend], endpoint: Endpoint
) -> None:
    endpoint.inject(503, times=2)
    assert connect().generate(REQUEST).passed
    assert endpoint.drill.scheduled == []


def test_retry_after_is_honoured(connect: Callable[..., RunPodBackend], endpoint: Endpoint) -> None:
    endpoint.inject(429, retry_after=1.2)
    started = time.monotonic()
    assert connect().generate(REQUEST).passed
    assert time.monotonic() - started >= 1.2


def test_an_endpoint_that_keeps_failing_is_a_transient_error(
    connect: Callable[..., RunPodBackend], endpoint: Endpoint
) -> None:
    backend = connect()
    backend.attempts = 2
    endpoint.inject(502, times=2)
    with pytest.raises(TransientError, match=r"still failing after 2 attempts: HTTP 502"):
        backend.generate(REQUEST)


def test_a_failed_job_surfaces_the_workers_message(connect: Callable[..., RunPodBackend]) -> None:
    with pytest.raises(InputError, match=r"FAILED on the worker: voice 'nobody' is not available"):
        connect().generate(REQUEST.model_copy(update={"voice": "nobody"}))


def test_a_job_that_takes_too_long_is_cancelled_and_transient(
    connect: Callable[..., RunPodBackend], endpoint: Endpoint
) -> None:
    with pytest.raises(TransientError, match=r"took longer than 0\.05 s; cancelled"):
        connect(runpod_job_timeout=0.05).generate(REQUEST)
    # stopped either by the client's cancel or by the execution timeout it sent with the job
    assert [job.status for job in endpoint.jobs.values()] in (["CANCELLED"], ["TIMED_OUT"])


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/voice.wav",
        "https://10.1.2.3/voice.wav",
        "https://169.254.169.254/latest/meta-data",
    ],
)
def test_a_private_address_reference_is_refused_before_any_job(
    connect: Callable[..., RunPodBackend], endpoint: Endpoint, url: str
) -> None:
    with pytest.raises(InputError, match="private, loopback, link-local"):
        connect().voice_fingerprint(url)
    assert endpoint.requests == 0


def test_cancel_all_stops_the_jobs_in_flight(
    connect: Callable[..., RunPodBackend], endpoint: Endpoint
) -> None:
    backend = connect()
    outcome: list[BaseException] = []

    def generate() -> None:
        try:
            backend.generate(REQUEST.model_copy(update={"n_candidates": 3}))
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=generate)
    thread.start()
    deadline = time.monotonic() + 10
    while not backend.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert backend.cancel_all() == 1
    thread.join(timeout=30)
    assert [job.status for job in endpoint.jobs.values()] == ["CANCELLED"]
    assert isinstance(outcome[0], TransientError) and "CANCELLED" in str(outcome[0])


def test_sustained_throttling_lowers_jobs_in_flight_and_it_recovers_after(
    worker: BestOfN, serve: Callable[[Any], str], caplog: pytest.LogCaptureFixture
) -> None:
    # Four endpoint slots that answer with one real, recorded result (the GPU fleet's stand-in).
    recorded = handle({"id": "recorded", "input": REQUEST.model_dump(mode="json")}, worker=worker)

    def answer(job: dict[str, Any]) -> dict[str, Any]:
        time.sleep(0.05)
        return recorded

    endpoint = Endpoint(EndpointConfig(api_key=KEY), [answer] * 4)
    endpoint.drill_faults(FaultProfile(rate=1.0, kinds=["throttle"], retry_after=0.05))
    settings = NarratorSettings(
        endpoint_limit="",
        backend="runpod",
        runpod_endpoint_id="local",
        runpod_base_url=f"{serve(endpoint.app)}/v2",
        runpod_concurrency=4,
    )
    backend = RunPodBackend(settings, KEY, WorkerSettings())
    backend.attempts = 1000  # this drill is about flow control, not giving up
    caplog.set_level(logging.WARNING, logger="narrator.runpod")
    with ThreadPoolExecutor(40) as pool:
        results = [pool.submit(backend.generate, REQUEST) for _ in range(40)]
        time.sleep(2.5)  # seconds of nothing but 429s
        throttling = endpoint.drill
        endpoint.drill_faults(FaultProfile())
        assert all(r.result(timeout=60).passed for r in results)

    windows = [window for _, window in backend.limit.history]
    lowest = windows.index(1)
    assert windows[: lowest + 1] == [4, 2, 1]  # halved while throttled
    assert windows[lowest:] == [1, 2, 3, 4]  # one more per window of successes, up to 4
    assert "throttled (HTTP 429): jobs in flight 4 -> 2" in caplog.text
    assert "recovering: jobs in flight 3 -> 4" in caplog.text
    assert throttling.injected["throttle"] > 10


def test_a_running_job_is_polled_just_after_its_expected_end(
    connect: Callable[..., RunPodBackend],
) -> None:
    backend = connect()
    backend.typical_run = 2.0  # finished jobs ran 2 s

    def pause(ran_ms: float) -> float:
        return backend._next_poll({"status": "IN_PROGRESS", "executionTime": ran_ms}, 0.7)

    assert pause(1500) == pytest.approx(0.5 + backend.closest_poll / 2)  # just after the end
    assert pause(100) == backend.slowest_poll  # far from it: sparse
    assert pause(2005) == backend.closest_poll  # just over: soon again
    assert pause(2050) == pytest.approx(0.05)  # the further over, the longer apart...
    assert pause(4000) == backend.first_poll  # ... up to first_poll
    assert backend._next_poll({"status": "IN_QUEUE"}, 0.7) == 0.7  # queued: the backoff
