"""The generation task: cache keys, result decoding, and retries of transient failures."""

import base64
import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest

from gpu_worker.best_of_n import BestOfN
from gpu_worker.errors import PermanentError, TransientError
from gpu_worker.schema import GenerateRequest, GenerateResult
from gpu_worker.wav import decode_wav, encode_wav
from tasks.cache import ChunkSerializer, cache_key, entry_problem
from tasks.chunk_generation import generate_chunk, plan_jobs, to_chunk_audio

REQUEST = GenerateRequest(text="The light came round once every ten seconds.", n_candidates=1)


def test_the_key_changes_with_anything_that_changes_the_audio() -> None:
    base = cache_key(REQUEST, "engine A")
    assert cache_key(REQUEST, "engine A") == base
    assert cache_key(REQUEST.model_copy(update={"text": "Another text."}), "engine A") != base
    assert cache_key(REQUEST.model_copy(update={"seed": 1}), "engine A") != base
    assert cache_key(REQUEST.model_copy(update={"voice": "emma"}), "engine A") != base
    assert cache_key(REQUEST.model_copy(update={"whisper_threshold": 90}), "engine A") != base
    assert cache_key(REQUEST, "engine B") != base


def test_the_neighbours_text_goes_to_the_engine_but_not_into_the_key() -> None:
    """It only smooths prosody across a join: an edit re-asks its own chunk, not three; a
    request without neighbours dumps as before they existed (old keys still hit)."""
    near = REQUEST.model_copy(update={"previous_text": "Before it.", "next_text": "After it."})
    assert cache_key(near, "engine A") == cache_key(REQUEST, "engine A")
    assert near.model_dump()["previous_text"] == "Before it."
    assert not {"previous_text", "next_text"} & set(REQUEST.model_dump())


class Endpoint:
    """A stand-in for a remote endpoint (the hosted RunPod API is out of reach here): it
    fails transiently `failures` times, then serves the real worker's result."""

    name = "flaky-endpoint"
    billed_per_take = False  # the Backend protocol's, as RunPod's
    uses_neighbours = False

    def __init__(self, worker: BestOfN, failures: int, error: Exception) -> None:
        self.worker, self.failures, self.error, self.calls = worker, failures, error, 0

    def identity(self, voice: str | None) -> str:
        return self.worker.identity(voice)

    def generate(self, request: GenerateRequest) -> GenerateResult:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return self.worker.run(request)


def test_plan_jobs_keys_each_chunk(worker: BestOfN) -> None:
    requests = [REQUEST.model_copy(update={"text": t}) for t in ("One.", "Two.", "One.")]
    jobs = plan_jobs(requests, Endpoint(worker, 0, Exception()))
    assert [j.request.text for j in jobs] == ["One.", "Two.", "One."]
    assert jobs[0].cache_key == jobs[2].cache_key != jobs[1].cache_key


def test_results_are_decoded_and_corrupt_audio_is_asked_for_again(worker: BestOfN) -> None:
    result = worker.run(REQUEST)
    audio = to_chunk_audio(result, REQUEST, attempts=1, seconds=0.5)
    assert audio.sample_rate == 24000 and audio.duration_seconds > 1
    assert audio.wav_sha256 == hashlib.sha256(audio.wav).hexdigest()
    with pytest.raises(TransientError, match=r"corrupt audio.*base64"):
        to_chunk_audio(result.model_copy(update={"audio_base64": "***"}), REQUEST, 1, 0.1)
    junk = base64.b64encode(b"not a wav file").decode()
    with pytest.raises(TransientError, match=r"audio that does not decode.*not decodable"):
        to_chunk_audio(result.model_copy(update={"audio_base64": junk}), REQUEST, 1, 0.1)


def with_audio(result: GenerateResult, samples: np.ndarray) -> GenerateResult:
    wav = encode_wav(samples, result.sample_rate)
    return result.model_copy(update={"audio_base64": base64.b64encode(wav).decode()})


def test_a_result_that_is_not_this_chunks_is_not_trusted(worker: BestOfN) -> None:
    """Each case is asked for again (transient), never kept."""
    result = worker.run(REQUEST)
    other = REQUEST.model_copy(update={"text": "A different chunk of the chapter."})
    with pytest.raises(TransientError, match="answered another request"):
        to_chunk_audio(result, other, 1, 0.1)  # e.g. one job id given to two chunks
    samples, _ = decode_wav(base64.b64decode(result.audio_base64), "test")
    cut = with_audio(result, samples[: samples.size // 2])  # lost in transit, length unchanged
    with pytest.raises(TransientError, match=r"s of audio where .* s was reported \(cut short\)"):
        to_chunk_audio(cut, REQUEST, 1, 0.1)
    silent = with_audio(result, np.zeros_like(samples))  # still reported as passed
    with pytest.raises(TransientError, match="silent audio it did not report"):
        to_chunk_audio(silent, REQUEST, 1, 0.1)
    clipped = with_audio(result, np.clip(samples * 40, -1, 1))
    with pytest.raises(TransientError, match="clipped audio it did not report"):
        to_chunk_audio(clipped, REQUEST, 1, 0.1)
    wrong_rate = result.model_copy(update={"sample_rate": 16000})
    with pytest.raises(TransientError, match="at 24000 Hz where 16000 Hz was reported"):
        to_chunk_audio(wrong_rate, REQUEST, 1, 0.1)
    older = result.model_copy(update={"request_sha256": None})
    with pytest.raises(PermanentError, match="deploy the current gpu_worker image"):
        to_chunk_audio(older, REQUEST, 1, 0.1)


@pytest.mark.usefixtures("prefect_server")
def test_a_transient_failure_is_retried_and_a_permanent_one_is_not(
    worker: BestOfN, tmp_path: Path
) -> None:
    task = generate_chunk.with_options(result_storage=tmp_path, retry_delay_seconds=0)
    flaky = Endpoint(worker, failures=2, error=TransientError("503 Service Unavailable"))
    job = plan_jobs([REQUEST], flaky)[0]
    audio = task(job, flaky)
    assert flaky.calls == 3
    assert audio.attempts == 3

    refused = Endpoint(worker, failures=5, error=PermanentError("401: the API key was refused"))
    job = plan_jobs([REQUEST.model_copy(update={"text": "Something else entirely."})], refused)[0]
    with pytest.raises(PermanentError, match="API key was refused"):
        task(job, refused)
    assert refused.calls == 1


def test_a_reference_clip_counts_by_content_not_by_url() -> None:
    """A presigned URL changes every run; the cache key must not."""
    a = REQUEST.model_copy(update={"audio_prompt_url": "https://cdn.x/zen.wav?sig=111"})
    b = REQUEST.model_copy(update={"audio_prompt_url": "https://cdn.x/zen.wav?sig=222"})
    assert cache_key(a, "engine", "sha-of-zen") == cache_key(b, "engine", "sha-of-zen")
    assert cache_key(a, "engine", "sha-of-zen") != cache_key(a, "engine", "sha-of-other")


def test_an_entry_written_before_chunk_audio_moved_is_still_read(worker: BestOfN) -> None:
    """Cache entries pickled when ChunkAudio lived in tasks.generate (CACHE_FORMAT 3)."""
    audio = to_chunk_audio(worker.run(REQUEST), REQUEST, 1, 0.1)
    old = pickle.dumps(audio, protocol=2).replace(
        b"ctasks.cache\nChunkAudio\n", b"ctasks.generate\nChunkAudio\n"
    )
    assert b"tasks.generate" in old
    back = ChunkSerializer().loads(base64.b64encode(old))
    assert back == audio and entry_problem(back) is None
