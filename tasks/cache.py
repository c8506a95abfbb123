"""The chunk cache: one entry per chunk, under a sha256 of everything that changes its audio.

The key (`cache_key`) covers the request (the normalised text and every generation
parameter, the voice name), the reference clip's content hash (not its URL) and the backend
identity (engine, model and voice hashes, Whisper model and settings). Editing one sentence
changes one key; changing the voice or the engine changes them all. An entry (`ChunkAudio`)
is written by the generate-chunk task's result store and read by any later run, in any
process. The cache is also where a run keeps its chunks' audio: a run holds each chunk's
record `without_audio()` and concatenation reads the audio back (`read_chunk`) as it
joins, so a long chapter's WAV is never in memory at once.
"""

import base64
import hashlib
import json
import pickle
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

from prefect import get_run_logger, task
from prefect.cache_policies import NONE
from prefect.results import ResultStore
from prefect.serializers import Serializer
from pydantic import Field

from gpu_worker.schema import CandidateReport, GenerateRequest, WordTiming

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


class ChunkSerializer(Serializer):  # not Serializer[X]: Prefect cannot register that
    """How a chunk is written to the cache: pickled, then base64 in one pass (Prefect's own
    pickle serializer wraps its base64 in lines, a Python loop that holds the GIL for ~20 ms
    per chunk; docs/PERFORMANCE.md)."""

    type: str = Field(default="narrator-chunk", frozen=True)

    def dumps(self, obj: ChunkAudio) -> bytes:
        return base64.b64encode(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))

    def loads(self, blob: bytes) -> ChunkAudio:
        return cast(ChunkAudio, pickle.loads(base64.b64decode(blob)))


CACHE_READERS = 8  # cache entries read at once (an S3 cache answers in tens of ms each)


def chunk_store(storage: Path | str) -> ResultStore:
    """The chunk cache in `storage` (a folder or a saved S3 block), as `generate_chunk`
    writes it."""
    from tasks.chunk_generation import generate_chunk  # the task that writes the cache

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
