"""No chunk silently wrong: what a hostile network or a flaky endpoint does to an answer is
caught before it is used or cached, asked for again where that can help, and refused with a
reason where it cannot. Each fault is injected over a real socket by a proxy in front of the
local endpoint (tests/proxy.py); every run that completes must sound exactly as a clean one.
"""

import base64
import json
import logging
import pickle
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prefect.client.orchestration import get_client
from pydantic import SecretStr

from flows.chapter import ChapterResult, NarrationOptions, narrate_chapter
from flows.services import configured, services
from gpu_worker.best_of_n import BestOfN
from gpu_worker.errors import PermanentError
from gpu_worker.handler import handle
from gpu_worker.schema import GenerationParams
from gpu_worker.scoring import score
from gpu_worker.wav import decode_wav, encode_wav
from local_endpoint.server import Endpoint, EndpointConfig
from tasks.cache import chunk_store, read_chunk
from tasks.settings import NarratorSettings
from tests.conftest import local_backend
from tests.proxy import Answer, TamperingProxy

pytestmark = pytest.mark.usefixtures("prefect_server")

KEY = "integrity-key-31337"
CHAPTER = """The keeper climbed the stairs at dusk.

A gull sat on the rail and watched the sea.

The lamp turned once, then twice, and the night began.
"""
TEXTS = [p.strip() for p in CHAPTER.split("\n\n")]
OPTIONS = NarrationOptions(
    generation=GenerationParams(n_candidates=1, max_retries=0),
    formats=[],
    validate_chapter=False,
)


def narrate(tmp_path: Path, out: str = "out") -> ChapterResult:
    source = tmp_path / "keeper.md"
    source.write_text(CHAPTER)
    return narrate_chapter(str(source), str(tmp_path / out), None, OPTIONS)


@pytest.fixture(scope="module")
def clean_audio(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The chapter as a clean run makes it (the local backend: the same worker code)."""
    folder = tmp_path_factory.mktemp("clean")
    with configured(NarratorSettings(cache_dir=str(folder / "cache"))):
        return Path(narrate(folder).audio).read_bytes()


@pytest.fixture
def endpoint(worker: BestOfN) -> Endpoint:
    return Endpoint(EndpointConfig(api_key=KEY), [partial(handle, worker=worker)] * 2)


@pytest.fixture
def proxy(endpoint: Endpoint, serve: Callable[[Any], str], tmp_path: Path) -> Iterator[Any]:
    """The proxy in front of the endpoint, with the flow's settings pointed at the proxy."""
    tampering = TamperingProxy(serve(endpoint.app))
    settings = NarratorSettings(
        backend="runpod",
        runpod_endpoint_id="local",
        runpod_base_url=f"{serve(tampering.app)}/v2",
        runpod_api_key=SecretStr(KEY),
        endpoint_limit="",
        runpod_job_timeout=60,
        chunk_retries=3,
        chunk_retry_delays=(0.1,),
        cache_dir=str(tmp_path / "cache"),
    )
    with configured(settings):
        yield tampering


def completed(answer: Answer) -> bool:
    return "/status/" in answer.path and (answer.json() or {}).get("status") == "COMPLETED"


def with_output_audio(answer: Answer, change: Callable[[np.ndarray], np.ndarray]) -> Answer:
    """`answer` (a COMPLETED status) with its audio changed, every other field as reported."""
    body = answer.json()
    samples, rate = decode_wav(base64.b64decode(body["output"]["audio_base64"]), "test")
    wav = encode_wav(change(samples), rate)
    body["output"]["audio_base64"] = base64.b64encode(wav).decode()
    return answer.with_json(body)


def assert_every_chunk_says_its_own_text(result: ChapterResult) -> None:
    chunks = json.loads(Path(result.metadata).read_text())["chunks"]
    assert [c["text"] for c in chunks] == TEXTS
    for chunk in chunks:
        assert score(chunk["text"], chunk["transcript"]) >= 80, chunk


def assert_cached_and_sound(result: ChapterResult, endpoint: Endpoint) -> None:
    """Every entry the run left in the cache checks out, and a rerun needs no job."""
    store = chunk_store(services().cache())
    for chunk in json.loads(Path(result.metadata).read_text())["chunks"]:
        assert read_chunk(store, chunk["cache_key"]) is not None
    before = len(endpoint.jobs)
    assert narrate(Path(result.audio).parents[1], "rerun").cache_hits == len(TEXTS)
    assert len(endpoint.jobs) == before


def test_one_job_id_given_to_two_chunks_gives_neither_the_others_audio(
    proxy: TamperingProxy, endpoint: Endpoint, tmp_path: Path, clean_audio: bytes
) -> None:
    first: list[str] = []

    def same_id(answer: Answer) -> Answer | None:
        if not answer.path.endswith("/run"):
            return None
        if not first:
            first.append(answer.json()["id"])
            return None
        return answer.with_json({**answer.json(), "id": first[0]})

    proxy.once(same_id)
    result = narrate(tmp_path)
    assert proxy.fired, "the fault was not injected"
    assert Path(result.audio).read_bytes() == clean_audio
    assert_every_chunk_says_its_own_text(result)
    assert services().backend.unconfirmed_jobs == 1  # type: ignore[attr-defined]
    assert_cached_and_sound(result, endpoint)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda s: s[: s.size // 2], id="audio cut short in transit"),
        pytest.param(np.zeros_like, id="digital silence reported as passed"),
        pytest.param(lambda s: np.clip(s * 50, -1, 1), id="clipped audio reported as passed"),
    ],
)
def test_damaged_audio_is_asked_for_again_and_never_cached(
    damage: Callable[[np.ndarray], np.ndarray],
    proxy: TamperingProxy,
    endpoint: Endpoint,
    tmp_path: Path,
    clean_audio: bytes,
) -> None:
    proxy.once(lambda a: completed(a) and with_output_audio(a, damage))
    result = narrate(tmp_path)
    assert proxy.fired, "the fault was not injected"
    assert Path(result.audio).read_bytes() == clean_audio
    assert len(endpoint.jobs) == len(TEXTS) + 1  # the damaged chunk's job, asked for again
    assert_cached_and_sound(result, endpoint)


def html(answer: Answer) -> Answer:
    return answer.with_body(
        b"<html><body>Bad gateway</body></html>", 200, **{"content-type": "text/html"}
    )


MALFORMED: dict[str, Callable[[Answer], Any]] = {
    "status answered with an HTML page": lambda a: "/status/" in a.path and html(a),
    "status answered with a JSON list": lambda a: "/status/" in a.path and a.with_json([1, 2]),
    "run answered with a 503 page": lambda a: (
        a.path.endswith("/run")
        and a.with_body(b"<h1>503</h1>", 503, **{"content-type": "text/html"})
    ),
    "COMPLETED output missing its audio": lambda a: (
        completed(a)
        and a.with_json({**a.json(), "output": {"status": "success", "best_score": 99}})
    ),
    "status 404 for a job in progress (endpoint restart)": lambda a: (
        "/status/" in a.path
        and (a.json() or {}).get("status") in ("IN_QUEUE", "IN_PROGRESS")
        and a.with_json({"error": "job not found"}, status=404)
    ),
}


@pytest.mark.parametrize("fault", list(MALFORMED))
def test_a_malformed_answer_is_retried_and_the_chapter_is_unchanged(
    fault: str, proxy: TamperingProxy, endpoint: Endpoint, tmp_path: Path, clean_audio: bytes
) -> None:
    proxy.once(MALFORMED[fault])
    result = narrate(tmp_path)
    assert proxy.fired, "the fault was not injected"
    assert Path(result.audio).read_bytes() == clean_audio
    assert_every_chunk_says_its_own_text(result)
    assert_cached_and_sound(result, endpoint)


def test_a_run_answer_without_a_job_id_is_submitted_again_and_reported(
    proxy: TamperingProxy,
    endpoint: Endpoint,
    tmp_path: Path,
    clean_audio: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy.once(lambda a: a.path.endswith("/run") and a.with_json({"status": "IN_QUEUE"}))
    with caplog.at_level(logging.WARNING, logger="narrator.runpod"):
        result = narrate(tmp_path)
    assert Path(result.audio).read_bytes() == clean_audio
    # the endpoint made a job whose id was lost: paid for, never read, and said so
    assert len(endpoint.jobs) == len(TEXTS) + 1
    assert services().backend.unconfirmed_jobs == 1  # type: ignore[attr-defined]
    assert any("without a job id" in r.getMessage() for r in caplog.records)


def test_a_redirect_to_a_login_page_fails_at_once_saying_where_not_what(
    proxy: TamperingProxy, endpoint: Endpoint, tmp_path: Path
) -> None:
    proxy.always(
        lambda a: (
            a.path.endswith("/run")
            and a.with_body(
                b"<form>sign in; session=tok-PLANTED-991</form>",
                302,
                location="https://login.example.com/sso?next=%2Fv2&token=tok-PLANTED-991",
            )
        )
    )
    with pytest.raises(PermanentError) as failed:
        narrate(tmp_path)
    message = str(failed.value)
    assert "redirect (HTTP 302, to login.example.com)" in message
    assert "NARRATOR_RUNPOD_BASE_URL" in message
    assert "PLANTED" not in message and "<form>" not in message
    assert not (tmp_path / "out" / "keeper.wav").exists()


def test_an_error_body_echoing_the_api_key_never_shows_it(
    proxy: TamperingProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A gateway whose error page echoes the request's headers (the API key among them):
    the chunk fails saying what came back, and the key is in no error, state or log line."""
    echo = {"error": f"gateway error; request headers: {{'Authorization': 'Bearer {KEY}'}}"}
    proxy.always(lambda a: a.path.endswith("/run") and a.with_json(echo, 500))
    once = services().settings.model_copy(update={"chunk_retries": 0})
    with configured(once), caplog.at_level(logging.INFO), pytest.raises(PermanentError) as failed:
        narrate(tmp_path)
    assert "HTTP 500 from /run" in str(failed.value) and "gateway error" in str(failed.value)
    seen = [str(failed.value), caplog.text]
    with get_client(sync_client=True) as prefect:
        seen += [repr(run.state) for run in prefect.read_flow_runs()]
        seen += [repr(task.state) for task in prefect.read_task_runs()]
        seen += [entry.message for entry in prefect.read_logs()]
    assert [text for text in seen if KEY in text] == []


def damage_entry(folder: Path, key: str, how: str) -> None:
    """Damage one cache entry on disk: unreadable, or audio that is not what it records."""
    path = folder / key
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:200])
        return
    record = json.loads(path.read_text())
    audio = pickle.loads(base64.b64decode(record["result"]))
    samples, rate = decode_wav(audio.wav, "test")
    short = encode_wav(samples[: samples.size // 3], rate)
    audio = type(audio)(**{**audio.__dict__, "wav": short, "wav_sha256": None})
    record["result"] = base64.b64encode(pickle.dumps(audio)).decode()
    path.write_text(json.dumps(record))


def test_a_damaged_cache_entry_is_named_evicted_and_made_again(
    cache: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = narrate(tmp_path)
    chunks = json.loads(Path(first.metadata).read_text())["chunks"]
    damage_entry(cache, chunks[0]["cache_key"], "truncated")
    damage_entry(cache, chunks[2]["cache_key"], "wrong audio")
    backend = local_backend()
    before = backend.requests
    with caplog.at_level(logging.WARNING):
        again = narrate(tmp_path)
    assert backend.requests - before == 2  # exactly the damaged two, not a chapter failure
    assert again.cache_hits == 1
    assert Path(again.audio).read_bytes() == Path(first.audio).read_bytes()
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert f"chunk 0: its cache entry {chunks[0]['cache_key']} unreadable" in warned
    assert f"chunk 2: its cache entry {chunks[2]['cache_key']} holds " in warned
    assert "cut short" in warned
    assert narrate(tmp_path).cache_hits == 3  # the new entries are sound


def test_a_worker_image_older_than_the_digest_stops_the_run_after_one_job(
    proxy: TamperingProxy, endpoint: Endpoint, tmp_path: Path
) -> None:
    """Its answers can never be trusted: one paid job is enough to know, not one per chunk."""

    def older(answer: Answer) -> Answer | None:
        if not completed(answer):
            return None
        body = answer.json()
        body["output"].pop("request_sha256", None)
        return answer.with_json(body)

    proxy.always(older)
    one_at_a_time = services().settings.model_copy(update={"runpod_concurrency": 1})
    with configured(one_at_a_time), pytest.raises(PermanentError) as failed:
        narrate(tmp_path)
    assert "deploy the current gpu_worker image" in str(failed.value)
    assert len(endpoint.jobs) == 1
