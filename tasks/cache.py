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
import contextlib
import hashlib
import io
import json
import pickle
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from prefect import get_run_logger, task
from prefect.cache_policies import NONE
from prefect.filesystems import LocalFileSystem
from prefect.results import ResultStore, resolve_result_storage
from prefect.serializers import Serializer
from prefect.settings import PREFECT_API_URL
from pydantic import Field

from gpu_worker.errors import PermanentError, storage_full
from gpu_worker.schema import CandidateReport, GenerateRequest, WordTiming
from gpu_worker.voices import write_atomic
from gpu_worker.wav import decode_wav

CACHE_FORMAT = 3  # bump when ChunkAudio changes shape: old entries stop matching


@dataclass(frozen=True)
class ChunkJob:
    index: int
    request: GenerateRequest
    cache_key: str
    take: int = 0  # which reading of the chunk (tasks/takes.py); 0: its first


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
    wav_sha256: str | None = None  # of `wav`, checked when read back (None: an older entry)

    def without_audio(self) -> "ChunkAudio":
        """This record with its WAV bytes left to the cache: what a run keeps per chunk."""
        return replace(self, wav=b"")


def wav_problem(wav: bytes, sample_rate: int, duration_seconds: float) -> str | None:
    """What is wrong with `wav` as audio of `sample_rate` lasting `duration_seconds` (to the
    millisecond its record was rounded to), or None when nothing is."""
    try:
        samples, rate = decode_wav(wav, "chunk audio")
    except PermanentError as e:
        return f"audio that does not decode ({e})"
    if samples.size == 0:
        return "empty audio"
    if rate != sample_rate:
        return f"audio at {rate} Hz where {sample_rate} Hz was reported"
    decoded = samples.size / rate
    if abs(decoded - duration_seconds) > 0.002:
        return f"{decoded:.3f} s of audio where {duration_seconds:.3f} s was reported (cut short)"
    return None


def entry_problem(audio: ChunkAudio) -> str | None:
    """What is wrong with a cache entry read back: its WAV must be the one its record
    describes (hash, rate, length)."""
    if audio.wav_sha256 is not None and hashlib.sha256(audio.wav).hexdigest() != audio.wav_sha256:
        return "audio that is not the audio it was stored with"
    return wav_problem(audio.wav, audio.sample_rate, audio.duration_seconds)


def cache_key(request: GenerateRequest, backend_identity: str, voice: str | None = None) -> str:
    """sha256 over the request, the clip's own fingerprint and the backend's identity. Left
    out: the clip's URL (the fingerprint stands for it) and the neighbours' text, which only
    smooths prosody across a join: editing one sentence re-asks its chunk, not three."""
    payload = {
        "format": CACHE_FORMAT,
        "request": request.model_dump(
            mode="json", exclude={"audio_prompt_url", "previous_text", "next_text"}
        ),
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
        return cast(ChunkAudio, _Unpickler(io.BytesIO(base64.b64decode(blob))).load())


class _Unpickler(pickle.Unpickler):
    """Reads entries written before ChunkAudio moved here from tasks.generate."""

    def find_class(self, module: str, name: str) -> Any:
        return super().find_class("tasks.cache" if module == "tasks.generate" else module, name)


CACHE_READERS = 8  # cache entries read at once (an S3 cache answers in tens of ms each)


class ChunkFolder(LocalFileSystem):
    """A local chunk cache: Prefect's folder storage, with each entry written whole (to a
    temporary file, then renamed) and a full disk reported as "disk full at <folder>"."""

    _block_type_name = "Narrator Chunk Folder"

    # Prefect calls it with _sync=True; its base class types it async
    def write_path(self, path: str, content: bytes, _sync: bool = True) -> str:  # type: ignore[override]
        target = self._resolve_path(path)
        try:
            write_atomic(target, content)
        except OSError as e:
            full = storage_full(e, self.basepath)
            why_not_written(path, str(full or f"{type(e).__name__}: {e}"))
            raise full or e from e
        return str(target)

    async def awrite_path(self, path: str, content: bytes) -> str:
        return self.write_path(path, content)


_saved: dict[tuple[str, str], ChunkFolder] = {}
_saved_lock = threading.Lock()


UNFINISHED_AFTER_S = 3600.0  # a temporary entry file this old was left by a killed run


def sweep_unfinished(folder: Path) -> None:
    """Remove the temporary files of entry writes a killed run cut short (never entries:
    an entry is only ever a whole file renamed into place)."""
    if not folder.is_dir():
        return
    now = time.time()
    for path in folder.glob(".*"):
        with contextlib.suppress(OSError):  # another process may remove it first
            if path.is_file() and now - path.stat().st_mtime > UNFINISHED_AFTER_S:
                path.unlink()


def task_storage(storage: Path | str) -> ChunkFolder | str:
    """The cache as `generate_chunk`'s result storage: a folder as a ChunkFolder block (saved
    once per process and Prefect API: Prefect takes only saved blocks, and an instance
    saves a block load per task run), an S3 cache as its saved block's name."""
    if not isinstance(storage, Path):
        return storage
    folder = str(storage.expanduser().absolute())
    api = str(PREFECT_API_URL.value())
    with _saved_lock:
        if (api, folder) not in _saved:
            sweep_unfinished(Path(folder))
            block = ChunkFolder(basepath=folder)
            name = f"narrator-cache-{hashlib.sha256(folder.encode()).hexdigest()[:12]}"
            block.save(name, overwrite=True)
            _saved[api, folder] = block
        return _saved[api, folder]


def chunk_store(storage: Path | str) -> ResultStore:
    """The chunk cache in `storage` (a folder or a saved S3 block), read as `generate_chunk`
    writes it."""
    backing = (
        ChunkFolder(basepath=str(storage.expanduser()))
        if isinstance(storage, Path)
        else resolve_result_storage(storage, _sync=True)  # type: ignore[call-arg]  # as Prefect calls it
    )
    return ResultStore(
        result_storage=backing, serializer=ChunkSerializer(), cache_result_in_memory=False
    )


# Entries finished tasks could not write (a full disk, an S3 outage after its retries): how
# many tasks, per key (identical chunks share one), and why. The run keeps those chunks'
# audio in memory instead (`unwritten`).
_unwritten: Counter[str] = Counter()
_why: dict[str, str] = {}
_unwritten_lock = threading.Lock()


def why_not_written(key: str, reason: str) -> None:
    """Say why the entry under `key` could not be written (the storage knows)."""
    with _unwritten_lock:
        _why[key] = reason


def not_written(key: str) -> None:
    """Record that a task's entry under `key` was not written (its transaction rolled back)."""
    with _unwritten_lock:
        _unwritten[key] += 1


def unwritten(key: str) -> str | None:
    """Why the entry under `key` was not written by a task that just made it, or None when
    it was. Each task's record is answered once."""
    with _unwritten_lock:
        if _unwritten[key] <= 0:
            return None
        _unwritten[key] -= 1
        if _unwritten[key] == 0:
            del _unwritten[key]
            return _why.pop(key, DEFAULT_WHY)
        return _why.get(key, DEFAULT_WHY)


DEFAULT_WHY = "the cache could not store it (see the task's log)"


class DamagedEntry(Exception):
    """A cache entry that is there but cannot be trusted: unreadable, or audio that is not
    what its record describes."""


def read_chunk(
    store: ResultStore, key: str, storage: Path | str | None = None
) -> ChunkAudio | None:
    """The cached chunk under `key`, checked (`entry_problem`); None when there is none.
    Raises DamagedEntry, saying what is wrong, for an entry that is there but bad."""
    try:
        audio = store.read(key).result
    except Exception as e:
        if not _exists(store, key, storage):
            return None
        raise DamagedEntry(f"unreadable ({type(e).__name__})") from e
    if not isinstance(audio, ChunkAudio):
        raise DamagedEntry(f"holds a {type(audio).__name__}, not a chunk")
    problem = entry_problem(audio)
    if problem:
        raise DamagedEntry(f"holds {problem}")
    return audio


def _exists(store: ResultStore, key: str, storage: Path | str | None) -> bool:
    """Whether anything is stored under `key`: a folder's file is looked at directly
    (Prefect's own check reads the record and calls an unreadable one absent)."""
    if isinstance(storage, Path):
        return (storage.expanduser() / key).exists()
    try:
        return bool(store.exists(key))
    except Exception:
        return False  # cannot tell (a storage error): a miss, which the task looks up again


@dataclass(frozen=True)
class CacheLookup:
    """What the cache holds for a run's chunks: good entries (without their audio, which
    concatenation reads again) and damaged ones, with what is wrong with each."""

    found: dict[int, ChunkAudio]
    damaged: dict[int, str]


@task(name="find-cached-chunks", cache_policy=NONE)
def find_cached(jobs: list[ChunkJob], storage: Path | str) -> CacheLookup:
    """The chunks an earlier run already made, read from the cache and checked in one pass,
    so a rerun maps generation tasks only for the rest: a cached chunk costs a read, no task
    run and no backend call. A damaged entry is named in the log; the run generates that
    chunk again and its new audio replaces the entry."""
    store = chunk_store(storage)

    def read(job: ChunkJob) -> ChunkAudio | str | None:
        try:
            audio = read_chunk(store, job.cache_key, storage)
        except DamagedEntry as e:
            return str(e)
        return audio.without_audio() if audio else None

    with ThreadPoolExecutor(CACHE_READERS) as pool:
        read_back = dict(zip((job.index for job in jobs), pool.map(read, jobs), strict=True))
    found = {i: entry for i, entry in read_back.items() if isinstance(entry, ChunkAudio)}
    damaged = {i: entry for i, entry in read_back.items() if isinstance(entry, str)}
    logger = get_run_logger()
    logger.info("%d of %d chunks are in the cache", len(found), len(jobs))
    keys = {job.index: job.cache_key for job in jobs}
    for index, problem in damaged.items():
        logger.warning(
            "chunk %d: its cache entry %s %s; generating it again", index, keys[index], problem
        )
    return CacheLookup(found, damaged)
