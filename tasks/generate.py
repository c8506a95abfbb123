"""Phase 2.3: one mapped task per chunk, cached across runs, retried only when transient.

The cache key is a sha256 over everything that changes a chunk's audio: the request (the
normalised text and every generation parameter, the voice name), the reference clip's
content hash (not its URL) and the backend identity (engine, model and voice hashes, Whisper
model and settings). Editing one
sentence changes one key; changing the voice or the engine changes them all. Results are
persisted under that key in the result storage the flow configures, so any later run, in
any process, reuses them without calling the backend. The cache is also where a run keeps
its chunks' audio: a run holds each chunk's record `without_audio()` and concatenation
reads the audio back (`read_chunk`) as it joins, so a 3-hour chapter's ~520 MB of WAV is
never in memory at once.
"""

import base64
import hashlib
import json
import pickle
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from prefect import get_run_logger, task
from prefect.cache_policies import NONE
from prefect.results import ResultStore
from prefect.runtime import task_run as current_task_run
from prefect.serializers import Serializer
from pydantic import Field

from gpu_worker.errors import PermanentError, TransientError
from gpu_worker.schema import CandidateReport, GenerateRequest, GenerateResult, WordTiming
from gpu_worker.wav import decode_wav
from tasks.backends import Backend

CACHE_FORMAT = 3  # bump when ChunkAudio changes shape: old entries stop matching


@dataclass(frozen=True)
class ChunkJob:
    index: int
    request: GenerateRequest
    cache_key: str


@dataclass(frozen=True)
class ChunkAudio:
    """A chunk's chosen audio and how it was chosen: what the cache stores."""

    wav: bytes  # 16-bit mono WAV
    sample_rate: int
    duration_seconds: float
    best_score: float
    passed: bool
    reasons: list[str]  # why the chosen candidate did not pass, if it did not
    transcript: str
    words: list[WordTiming]  # what Whisper heard, when (chunk time)
    candidates: list[CandidateReport]
    retries_used: int  # extra best-of-N rounds on the worker
    candidates_skipped: int  # not made: a candidate reached accept_score first
    attempts: int  # task attempts (transient failures retried)
    backend_seconds: float

    def without_audio(self) -> "ChunkAudio":
        """This record with its WAV bytes left to the cache: what a run keeps per chunk."""
        return replace(self, wav=b"")


def cache_key(request: GenerateRequest, backend_identity: str, voice: str | None = None) -> str:
    """sha256 over the request (minus the reference clip's URL), the clip's own fingerprint
    and the backend's identity."""
    payload = {
        "format": CACHE_FORMAT,
        "request": request.model_dump(mode="json", exclude={"audio_prompt_url"}),
        "reference_audio": voice,
        "backend": backend_identity,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def voice_fields(voice: str | None) -> dict[str, str | None]:
    """A flow's `voice`: a built-in voice name ("heart"), or a reference clip to clone (an
    https URL, an s3:// URI, or a path on the workers' voices volume)."""
    if voice and ("/" in voice or "://" in voice or voice.lower().endswith((".wav", ".flac"))):
        return {"voice": None, "audio_prompt_url": voice}
    return {"voice": voice, "audio_prompt_url": None}


def plan_jobs(requests: list[GenerateRequest], backend: Backend) -> list[ChunkJob]:
    """One job per chunk request, with its cache key. The backend's identity and a reference
    clip's fingerprint are looked up once per voice."""
    identities: dict[str | None, str] = {}
    fingerprints: dict[str, str] = {}
    jobs = []
    for index, request in enumerate(requests):
        if request.voice not in identities:
            identities[request.voice] = backend.identity(request.voice)
        reference = request.audio_prompt_url
        if reference and reference not in fingerprints:
            fingerprints[reference] = backend.voice_fingerprint(reference)
        key = cache_key(request, identities[request.voice], fingerprints.get(reference or ""))
        jobs.append(ChunkJob(index, request, key))
    return jobs


def to_chunk_audio(result: GenerateResult, attempts: int, seconds: float) -> ChunkAudio:
    """Decode and check a backend's result. Audio that does not decode is a transient error:
    a take garbled on its way back is asked for again."""
    try:
        wav = base64.b64decode(result.audio_base64, validate=True)
        samples, rate = decode_wav(wav, "backend audio")
    except (ValueError, PermanentError) as e:
        raise TransientError(f"backend returned corrupt audio ({e}); asking again") from e
    if samples.size == 0:
        raise TransientError("backend returned empty audio; asking again")
    return ChunkAudio(
        wav=wav,
        sample_rate=rate,
        duration_seconds=round(samples.size / rate, 3),
        best_score=result.best_score,
        passed=result.passed,
        reasons=result.reasons,
        transcript=result.transcript,
        words=result.words,
        candidates=result.metadata.candidates,
        retries_used=result.metadata.retries_used,
        candidates_skipped=result.metadata.candidates_skipped,
        attempts=attempts,
        backend_seconds=round(seconds, 3),
    )


class ChunkSerializer(Serializer):  # not Serializer[X]: Prefect cannot register that
    """How a chunk is written to the cache: pickled, then base64 in one pass. Prefect's own
    pickle serializer wraps its base64 in lines (`base64.encodebytes`, a Python loop over
    57-byte pieces): ~20 ms of the GIL for each chunk's WAV, taken from the thread that
    polls the endpoint while a round of chunks comes back."""

    type: str = Field(default="narrator-chunk", frozen=True)

    def dumps(self, obj: ChunkAudio) -> bytes:
        return base64.b64encode(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))

    def loads(self, blob: bytes) -> ChunkAudio:
        return cast(ChunkAudio, pickle.loads(base64.b64decode(blob)))


def is_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry TransientError only."""
    try:
        state.result()
    except TransientError:
        return True
    except Exception:
        return False
    return False


def _job_key(context: Any, parameters: dict[str, Any]) -> str:
    return str(parameters["job"].cache_key)


@task(
    name="generate-chunk",
    task_run_name="chunk-{job.index:04d}",
    cache_key_fn=_job_key,
    persist_result=True,
    result_serializer=ChunkSerializer(),
    cache_result_in_memory=False,  # Prefect's store would keep the last 1,000 chunks' audio
    retries=4,  # flows set retries and delays from NarratorSettings (chunk_retries)
    retry_delay_seconds=[2, 10, 30, 60],
    retry_jitter_factor=0.5,
    retry_condition_fn=is_transient,
)
def generate_chunk(job: ChunkJob, backend: Backend) -> ChunkAudio:
    """Generate one chunk's audio on the backend (only runs on a cache miss)."""
    logger = get_run_logger()
    attempt = int(current_task_run.run_count or 1)
    logger.info(
        "chunk %d attempt %d: %d chars on %s",
        job.index,
        attempt,
        len(job.request.text),
        backend.name,
    )
    started = time.perf_counter()
    try:
        result = backend.generate(job.request)
    except TransientError as e:
        logger.warning(
            "chunk %d attempt %d: transient failure, will retry: %s", job.index, attempt, e
        )
        raise
    audio = to_chunk_audio(result, attempt, time.perf_counter() - started)
    logger.info(
        "chunk %d: score %.1f (%s), scores %s, %d extra rounds, %.2fs audio in %.2fs",
        job.index,
        audio.best_score,
        "passed" if audio.passed else "below threshold",
        [c.score for c in audio.candidates],
        audio.retries_used,
        audio.duration_seconds,
        audio.backend_seconds,
    )
    return audio


CACHE_READERS = 8  # cache entries read at once (an S3 cache answers in tens of ms each)


def chunk_store(storage: Path | str) -> ResultStore:
    """The chunk cache in `storage` (a folder or a saved S3 block), as `generate_chunk`
    writes it."""
    same_as_task = generate_chunk.with_options(result_storage=storage)
    return cast(ResultStore, ResultStore().update_for_task(same_as_task))  # sync call


def read_chunk(store: ResultStore, key: str) -> ChunkAudio | None:
    """The cached chunk under `key`; None when it is missing or unreadable (absent, partly
    written or from an older format)."""
    try:
        audio = store.read(key).result
    except Exception:
        return None
    return audio if isinstance(audio, ChunkAudio) else None


@task(name="find-cached-chunks", cache_policy=NONE)
def find_cached(jobs: list[ChunkJob], storage: Path | str) -> dict[int, ChunkAudio]:
    """The chunks an earlier run already made, read from the cache in one pass (without
    their audio, which concatenation reads again), so a rerun maps generation tasks only
    for the rest: a cached chunk costs two reads, no task run and no backend call. An entry
    that is missing or unreadable is a miss."""
    store = chunk_store(storage)

    def read(job: ChunkJob) -> ChunkAudio | None:
        audio = read_chunk(store, job.cache_key)
        return audio.without_audio() if audio else None

    with ThreadPoolExecutor(CACHE_READERS) as pool:
        found = dict(zip((job.index for job in jobs), pool.map(read, jobs), strict=True))
    cached = {index: audio for index, audio in found.items() if audio is not None}
    get_run_logger().info("%d of %d chunks are in the cache", len(cached), len(jobs))
    return cached


@dataclass(frozen=True)
class ChunkOutcome:
    """What became of one chunk in this run."""

    job: ChunkJob
    audio: ChunkAudio | None  # without its audio (the cache holds it); None when it failed
    cached: bool  # reused from an earlier run: no backend call
    error: str | None = None
