"""Phase 2: the generate-chunk task, mapped one per chunk, retried only when transient.

`plan_jobs` gives each chunk's request its cache key (tasks/cache.py); `generate_chunk` asks
the backend for it, checks what comes back (`to_chunk_audio`) and hands the result to
Prefect's result store, which is the chunk cache.
"""

import base64
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from prefect import get_run_logger, task
from prefect.runtime import task_run as current_task_run

from gpu_worker import qc
from gpu_worker.errors import PermanentError, TransientError
from gpu_worker.schema import NO_DIGEST, GenerateRequest, GenerateResult, request_digest
from gpu_worker.wav import decode_wav
from tasks.backends import Backend
from tasks.backends.order import in_reading_order
from tasks.cache import (
    ChunkAudio,
    ChunkJob,
    ChunkSerializer,
    cache_key,
    not_written,
    wav_problem,
)
from tasks.takes import retake


def integrity_problems(samples: np.ndarray, rate: int, result: GenerateResult) -> list[str]:
    """The signal gates the client runs again on what it received: what transit or a
    faulty worker can do to audio. Clipping is counted over the take as the worker judged
    it, before its tail was trimmed (the longest candidate bounds that), so a take the
    worker passed is never refused for its trim."""
    if samples.size == 0:
        return ["empty"]
    if qc.rms_dbfs(samples) < qc.SILENCE_DBFS:
        return ["silent"]
    judged = max(
        [samples.size] + [round(c.duration_seconds * rate) for c in result.metadata.candidates]
    )
    clipped = np.count_nonzero(np.abs(samples) >= qc.CLIP_LEVEL) / judged
    return ["clipped"] if clipped > qc.MAX_CLIPPED_FRACTION else []


def plan_jobs(
    requests: list[GenerateRequest],
    backend: Backend,
    take_for: Callable[[ChunkJob], int] | None = None,
) -> list[ChunkJob]:
    """One job per chunk request, with its cache key. The backend's identity and a reference
    clip's fingerprint are looked up once per voice. `take_for` (tasks/takes.py TakePlan)
    says, from a chunk's take-0 job, which take of it to ask for instead."""
    identities: dict[str | None, str] = {}
    fingerprints: dict[str, str] = {}
    jobs = []
    for index, request in enumerate(requests):
        if request.voice not in identities:
            identities[request.voice] = backend.identity(request.voice)
        reference = request.audio_prompt_url
        if reference and reference not in fingerprints:
            fingerprints[reference] = backend.voice_fingerprint(reference)
        identity, clip = identities[request.voice], fingerprints.get(reference or "")
        job = ChunkJob(index, request, cache_key(request, identity, clip))
        take = take_for(job) if take_for else 0
        if take:
            again = retake(request, take)
            job = ChunkJob(index, again, cache_key(again, identity, clip), take)
        jobs.append(job)
    return jobs


def to_chunk_audio(
    result: GenerateResult, request: GenerateRequest, attempts: int, seconds: float
) -> ChunkAudio:
    """A backend's result, checked before anything trusts it: it must answer this request
    (the worker's digest of what it answered), its audio must decode to the rate and length
    it reports, and it must not be silent or clipped unless the worker said so. Anything
    else is a transient error, asked for again and never cached."""
    if result.request_sha256 is None:
        raise PermanentError(NO_DIGEST)
    if result.request_sha256 != request_digest(request):
        raise TransientError(
            "the endpoint answered another request than this chunk's; asking again"
        )
    try:
        wav = base64.b64decode(result.audio_base64, validate=True)
    except ValueError as e:
        raise TransientError(f"backend returned corrupt audio ({e}); asking again") from e
    problem = wav_problem(wav, result.sample_rate, result.audio_duration_seconds)
    if problem:
        raise TransientError(f"backend returned {problem}; asking again")
    samples, rate = decode_wav(wav, "backend audio")
    unreported = [r for r in integrity_problems(samples, rate, result) if r not in result.reasons]
    if unreported:
        raise TransientError(
            f"backend returned {' and '.join(unreported)} audio it did not report; asking again"
        )
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
        wav_sha256=hashlib.sha256(wav).hexdigest(),
    )


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
        with in_reading_order(job.index):
            result = backend.generate(job.request)
    except TransientError as e:
        logger.warning(
            "chunk %d attempt %d: transient failure, will retry: %s", job.index, attempt, e
        )
        raise
    audio = to_chunk_audio(result, job.request, attempt, time.perf_counter() - started)
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


@generate_chunk.on_rollback
def _entry_not_written(transaction: Any) -> None:
    """Prefect rolls a chunk's transaction back when its cache entry could not be written:
    the run keeps that chunk's audio instead of losing it (flows/map_chunks.py)."""
    not_written(transaction.key)


@dataclass(frozen=True)
class ChunkOutcome:
    """What became of one chunk in this run."""

    job: ChunkJob
    # without its WAV (the cache holds it), unless the cache could not store it; None when
    # the chunk failed
    audio: ChunkAudio | None
    cached: bool  # reused from an earlier run: no backend call
    error: str | None = None
    not_cached: str | None = None  # why the cache could not store it (its WAV kept here)
