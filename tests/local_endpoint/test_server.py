"""The local RunPod-compatible endpoint: the hosted API's contract around the real handler."""

import base64
import json
import socket
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
import pytest

from gpu_worker.best_of_n import BestOfN
from gpu_worker.handler import handle
from gpu_worker.wav import decode_wav
from local_endpoint.server import Endpoint, EndpointConfig

KEY = "test-key-1234"
JOB = {"input": {"text": "The beam swept out across the water.", "n_candidates": 1}}


@pytest.fixture
def endpoint(worker: BestOfN) -> Endpoint:
    return Endpoint(
        EndpointConfig(api_key=KEY, run_retention_s=2), [partial(handle, worker=worker)]
    )


@pytest.fixture
def api(endpoint: Endpoint, serve: Callable[[Any], str]) -> httpx.Client:
    base = serve(endpoint.app)
    return httpx.Client(
        base_url=f"{base}/v2/local", headers={"authorization": f"Bearer {KEY}"}, timeout=60
    )


def wait(api: httpx.Client, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status: dict[str, Any] = api.get(f"/status/{job_id}").json()
        if status["status"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never finished")


def test_run_then_status_returns_the_handlers_audio(api: httpx.Client) -> None:
    submitted = api.post("/run", json=JOB).json()
    assert submitted["status"] == "IN_QUEUE"
    done = wait(api, submitted["id"])
    assert done["status"] == "COMPLETED"
    assert done["delayTime"] >= 0 and done["executionTime"] > 0
    audio, rate = decode_wav(base64.b64decode(done["output"]["audio_base64"]))
    assert rate == 24000 and audio.size / rate > 1.0
    health = api.get("/health").json()
    assert health["jobs"]["completed"] == 1
    assert health["workers"] == {
        "idle": 1,
        "running": 0,
        "initializing": 0,
        "throttled": 0,
        "unhealthy": 0,
    }


def test_runsync_waits_for_the_result(api: httpx.Client) -> None:
    done = api.post("/runsync", params={"wait": 60_000}, json=JOB).json()
    assert done["status"] == "COMPLETED"
    assert done["output"]["passed"] is True


def test_a_bad_request_fails_the_job_with_the_field_named(api: httpx.Client) -> None:
    done = api.post("/runsync", json={"input": {"text": "hi", "n_candidates": 0}}).json()
    assert done["status"] == "FAILED"
    error = json.loads(done["error"])  # the wire error, as RunPod carries it: a JSON string
    assert error["kind"] == "input" and error["code"] == "invalid_input"
    assert error["message"].startswith("invalid request: n_candidates:")
    assert "greater than or equal to 1" in error["message"]


@pytest.mark.parametrize("header", [None, "Bearer wrong", "wrong", f"Bearer {KEY}x"])
def test_requests_without_the_key_are_refused(api: httpx.Client, header: str | None) -> None:
    headers = {"authorization": header} if header else {}
    response = httpx.get(f"{api.base_url}health", headers=headers)
    assert response.status_code == 401


def test_the_bare_key_is_accepted_as_runpod_does(api: httpx.Client) -> None:
    assert httpx.get(f"{api.base_url}health", headers={"authorization": KEY}).status_code == 200


def test_bodies_over_the_limit_and_non_json_are_refused(api: httpx.Client) -> None:
    big = api.post("/run", json={"input": {"text": "x" * (10 * 1024 * 1024)}})
    assert big.status_code == 413 and "over 10,485,760 bytes" in big.json()["error"]
    assert api.post("/run", content=b"not json").status_code == 400
    assert api.post("/run", json={"text": "no input key"}).status_code == 400


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"input": {"text": "hi"}, "policy": {"executionTimeout": -5}}', "greater than 0"),
        (b'{"input": {"text": "hi"}, "policy": {"executionTimeout": "soon"}}', "valid integer"),
        (b'{"input": {"text": "hi"}, "policy": "fast"}', "policy: "),
        (b'{"input": {"text": "hi"}, "policy": {"executionTimeout": 999999999999}}', "less than"),
        (b"[1, 2, 3]", "JSON object"),
        (b'{"input": ', "not JSON"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_a_malformed_request_is_a_400_saying_what_not_a_500(
    api: httpx.Client, endpoint: Endpoint, body: bytes, says: str
) -> None:
    """A 500 tells a client to retry; a client's own mistake must not be retried."""
    answer = api.post("/run", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert says in answer.json()["error"]
    assert endpoint.jobs == {}


def test_an_oversized_body_is_refused_before_it_is_all_sent(
    worker: BestOfN, serve: Callable[[Any], str]
) -> None:
    """The limit holds while the body arrives: a client streaming 100 MB hears 413 after
    sending a small part of it, whether or not it declared the length."""
    small = Endpoint(
        EndpointConfig(api_key=KEY, run_max_bytes=50_000), [partial(handle, worker=worker)]
    )
    host, port = serve(small.app).removeprefix("http://").split(":")
    for framing in (b"content-length: 100000000\r\n", b"transfer-encoding: chunked\r\n"):
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(
                b"POST /v2/local/run HTTP/1.1\r\nhost: x\r\n"
                + f"authorization: Bearer {KEY}\r\ncontent-type: application/json\r\n".encode()
                + framing
                + b"\r\n"
            )
            sent = 0
            conn.settimeout(0.05)
            answer = b""
            while sent < 5_000_000 and not answer:
                part = b'{"input": "' + b"x" * 16_000
                if b"chunked" in framing:
                    part = f"{len(part):x}\r\n".encode() + part + b"\r\n"
                try:
                    conn.sendall(part)
                    sent += len(part)
                    answer = conn.recv(4096)
                except TimeoutError:
                    continue
                except OSError:  # the server closed the connection after answering
                    break
            conn.settimeout(10)
            answer = answer or conn.recv(4096)
        assert answer.startswith(b"HTTP/1.1 413"), (framing, answer[:100])
        assert sent < 1_000_000, sent  # refused long before the 100 MB arrived
    assert small.jobs == {}


def test_cancel_a_queued_job_and_purge_the_queue(api: httpx.Client) -> None:
    running = api.post("/run", json=JOB).json()["id"]  # one slot: the next ones queue
    queued = api.post("/run", json=JOB).json()["id"]
    purged = api.post("/run", json=JOB).json()["id"]
    assert api.post(f"/cancel/{queued}").json() == {"id": queued, "status": "CANCELLED"}
    assert api.post("/purge-queue").json()["removed"] == 1
    assert wait(api, running)["status"] == "COMPLETED"
    assert api.get(f"/status/{queued}").json()["status"] == "CANCELLED"
    assert api.get(f"/status/{purged}").json()["status"] == "CANCELLED"


def test_a_job_over_its_execution_timeout_is_timed_out(api: httpx.Client) -> None:
    job = {**JOB, "policy": {"executionTimeout": 1}}
    done = wait(api, api.post("/run", json=job).json()["id"])
    assert done["status"] == "TIMED_OUT"
    assert "execution timeout" in done["error"]


def test_results_expire_after_their_retention(api: httpx.Client) -> None:
    job_id = api.post("/run", json=JOB).json()["id"]
    wait(api, job_id)
    time.sleep(2.2)
    gone = api.get(f"/status/{job_id}")
    assert gone.status_code == 404 and "expired" in gone.json()["error"]


def test_injected_faults_are_answered_first(api: httpx.Client, endpoint: Endpoint) -> None:
    endpoint.inject(503, times=2)
    endpoint.inject(429, retry_after=1.5)
    assert api.get("/health").status_code == 503
    assert api.get("/health").status_code == 503
    throttled = api.get("/health")
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "1.5"
    assert api.get("/health").status_code == 200
