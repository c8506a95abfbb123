"""narrate_chapter: one chapter file in, narrated audio with metadata and subtitles out.

phase 1   prepare_text                     decode, normalise, split into chunks
phase 2   generate_chunk (mapped)          one task per chunk, cached, retried if transient
          concatenate_chapter              trims, pauses, fades -> one WAV
phase 3   verify_audio, write_reports      check it; metadata, segments, subtitles
          publish                          every output moved into place, or none
"""

import gc
import hashlib
import json
import platform
import queue
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal, Protocol, cast
from uuid import UUID

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import PrefectFuture
from prefect.logging import get_logger
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, ConfigDict, Field

from gpu_worker.errors import PermanentError, ValidationFailed
from gpu_worker.schema import GenerateRequest, GenerationParams
from gpu_worker.settings import WorkerSettings
from tasks.audio import AudioOptions, concatenate_chapter
from tasks.backends import Backend, cancel_remote_jobs, open_backend
from tasks.cast import Cast
from tasks.encode import Format, encode_outputs, markers
from tasks.generate import (
    ChunkAudio,
    ChunkJob,
    ChunkOutcome,
    find_cached,
    generate_chunk,
    plan_jobs,
)
from tasks.loudness import LoudnessOptions
from tasks.post import artifact_key, publish_artifacts, summary, verify_audio, write_reports
from tasks.settings import NarratorSettings
from tasks.storage import OutputDir, result_storage
from tasks.text import Chunk, ChunkingOptions, PreparedText, prepare_text
from tasks.validation import validate_chapter
from tasks.voice_library import VoiceLibrary

# Threads for mapped chunk tasks: enough that the endpoint's window (W + a few) stays full
# while finished tasks record their results. Real concurrency is the backend's (local_workers
# for the local backend); this only caps how many threads wait for it.
MAX_TASK_THREADS = 64
# Seconds between updates of the progress artifact: one per chunk was half of a nightly
# batch's API calls, each a write the Prefect server's database serialises.
PROGRESS_EVERY = 2.0
# Finished chunk tasks between two garbage collections. A Prefect future sits in reference
# cycles (its done callbacks) with its final state, which holds the chunk's audio; Python
# frees those only at a full collection, which a run of a few thousand tasks seldom
# triggers (measured: all 360 chunks' audio of a 1.2-hour chapter still held at the end).
COLLECT_EVERY = 64


class NarrationOptions(BaseModel):
    """Per-run choices. Every field has a default that works; the Prefect UI shows these."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    generation: GenerationParams = Field(default_factory=GenerationParams)
    chunking: ChunkingOptions = Field(default_factory=ChunkingOptions)
    audio: AudioOptions = Field(default_factory=AudioOptions)
    loudness: LoudnessOptions = Field(default_factory=LoudnessOptions)
    formats: list[Format] = Field(
        ["mp3", "m4b"],
        description="Delivery formats made "
        "beside the WAV: mp3 (44.1 kHz, 192 kbps, as ACX asks) and "
        "m4b (AAC, with a chapter marker at each heading).",
    )
    validate_chapter: bool = Field(
        True,
        description="Transcribe the finished chapter, "
        "compare it with the text and flag chunks that went wrong "
        "(validation.json and a Prefect artifact).",
    )
    on_low_score: Literal["flag", "fail"] = Field(
        "flag",
        description="When a chunk's best candidate stays below whisper_threshold "
        "after every retry: flag it in the metadata and keep it, or fail the chapter.",
    )
    refresh_cache: bool = Field(
        False,
        description="Regenerate every chunk even if an "
        "identical one is cached (the new audio replaces it).",
    )


class ChapterResult(BaseModel):
    """Where everything went (paths, or s3:// URIs) and how it turned out."""

    audio: str
    subtitles: str
    metadata: str
    segments: str
    files: list[str]
    duration_seconds: float
    chunks: int
    cache_hits: int
    flagged: list[int] = Field(description="Chunks below the threshold after every retry.")
    wer: float | None = Field(description="Word error rate of the whole chapter, re-heard.")
    validation_flagged: list[int] = Field(
        description="Chunks the whole-chapter check flagged (content loss, repetition, garble)."
    )
    integrated_lufs: float
    fingerprint: str = Field(
        description="Hash of the input and everything that shapes the "
        "output: a batch skips chapters whose fingerprint is unchanged."
    )


@dataclass(frozen=True)
class Run:
    """What one narration was asked for and where it goes."""

    source: str
    voice: str | None
    cast: Cast | None
    options: "NarrationOptions"
    settings: NarratorSettings
    worker: WorkerSettings
    backend: Backend
    output: OutputDir
    stem: str
    storage: Path | str  # the chunk cache, where each chunk's audio is read from to join it


class Progress(Protocol):
    """Told about the chapter as it goes (the CLI draws a progress bar with it)."""

    def planned(self, total: int) -> None: ...

    def finished(self, outcome: ChunkOutcome) -> None: ...


progress_listener: ContextVar[Progress | None] = ContextVar("progress_listener", default=None)


@contextmanager
def listening(progress: Progress) -> Iterator[None]:
    token = progress_listener.set(progress)
    try:
        yield
    finally:
        progress_listener.reset(token)


def output_stem(source: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(source).stem).strip(".-")
    return stem or "chapter"


def _cancel_remote_jobs(flow: Any, flow_run: Any, state: Any) -> None:
    """When a run is cancelled or crashes, stop paying for its jobs still on the endpoint."""
    cancelled = cancel_remote_jobs()
    if cancelled:
        get_logger("narrator").warning("cancelled %d RunPod jobs still in flight", cancelled)


@flow(
    name="narrate-chapter",
    on_cancellation=[_cancel_remote_jobs],
    on_crashed=[_cancel_remote_jobs],
    # Prefect types TaskRunner invariantly in its future type; this runner is the stock one.
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_TASK_THREADS),  # type: ignore[arg-type]
)
def narrate_chapter(
    source: str,
    out_dir: str | None = None,
    voice: str | None = None,
    options: NarrationOptions = NarrationOptions(),  # noqa: B008 - frozen, shown in the UI
    cast: Cast | None = None,
) -> ChapterResult:
    """Narrate one chapter into audio, subtitles and a quality record.

    Args:
        source: The chapter: a UTF-8 text or markdown file, as a path on the worker or an
            s3://bucket/key URI.
        out_dir: Folder or s3:// prefix for the outputs. Empty: out/<chapter name>/ in
            the worker's working directory.
        voice: A built-in voice name, or a reference clip to clone (https URL, s3:// URI,
            or a path on the workers' voices volume). Empty: the engine's default voice.
        options: How to generate, check, join and deliver the audio.
        cast: For a dialogue: the narrator's and each speaker's voice. Lines tagged
            `NAME: ...` or `[Name] ...` are read by that speaker (see tasks/cast.py).
    """
    settings, worker = NarratorSettings(), WorkerSettings()
    prepared = prepare_text(
        source,
        options.chunking,
        settings.max_chapter_bytes,
        settings.s3_endpoint_url,
        list(cast.speakers) if cast else None,
    )
    backend = open_backend(settings, worker)
    library = VoiceLibrary(worker.voice_library, settings.s3_endpoint_url)
    jobs = plan_jobs(chunk_requests(prepared.chunks, voice, options, cast, library), backend)
    stem = output_stem(source)
    # before any chunk is generated, so an unusable output location costs nothing
    output = OutputDir(out_dir or str(Path("out") / stem), settings.s3_endpoint_url)
    storage = result_storage(settings.cache_dir, settings.s3_endpoint_url)
    try:
        outcomes = generate(jobs, backend, storage, settings, options, stem)
        run = Run(source, voice, cast, options, settings, worker, backend, output, stem, storage)
        result = assemble(prepared, outcomes, run)
    except BaseException:
        output.discard()
        raise
    get_run_logger().info(
        "narrated %s: %.1f s of audio, %d chunks (%d from cache) -> %s",
        source,
        result.duration_seconds,
        result.chunks,
        result.cache_hits,
        result.audio,
    )
    return result


def chunk_requests(
    chunks: list[Chunk],
    voice: str | None,
    options: NarrationOptions,
    cast: Cast | None,
    library: VoiceLibrary,
) -> list[GenerateRequest]:
    """What to ask the backend for each chunk: its text, in its speaker's voice (a library
    voice's clip, a reference clip or a built-in voice)."""
    base = GenerateRequest(text=".", **options.generation.model_dump())
    roles = cast or Cast()
    resolved: dict[str | None, dict[str, str | None]] = {}
    requests = []
    for chunk in chunks:
        role = roles.role(chunk.speaker)
        name = role.voice or voice
        if name not in resolved:
            resolved[name] = library.fields(name)
        request = role.apply(base, resolved[name])
        requests.append(request.model_copy(update={"text": chunk.text}))
    return requests


def generate(
    jobs: list[ChunkJob],
    backend: Backend,
    storage: Path | str,
    settings: NarratorSettings,
    options: NarrationOptions,
    stem: str,
) -> list[ChunkOutcome]:
    """Reuse every cached chunk, map one generation task per other chunk and wait for all
    of them; fail naming every chunk that failed (after the others have finished, so their
    audio is cached for the rerun). A progress artifact follows the chunks as they finish.
    Outcomes keep no audio: concatenation reads it from the cache."""
    progress = progress_listener.get()
    if progress:
        progress.planned(len(jobs))
    reused = {} if options.refresh_cache else find_cached(jobs, storage)
    outcomes = {
        job.index: ChunkOutcome(job, reused[job.index], cached=True)
        for job in jobs
        if job.index in reused
    }
    tracker = cast(
        UUID,
        create_progress_artifact(
            100.0 * len(outcomes) / len(jobs),
            key=artifact_key(stem, "progress"),
            description=f"Chunks of {stem} generated",
        ),
    )
    if progress:
        for outcome in outcomes.values():
            progress.finished(outcome)
    missing = [job for job in jobs if job.index not in outcomes]
    backend.prepare(len(missing))
    task = generate_chunk.with_options(
        result_storage=storage,
        refresh_cache=options.refresh_cache,
        retries=settings.chunk_retries,
        retry_delay_seconds=list(settings.chunk_retry_delays),
    )
    shown = time.monotonic()
    for outcome in _run(task, missing, backend):
        outcomes[outcome.job.index] = outcome
        if time.monotonic() - shown >= PROGRESS_EVERY or len(outcomes) == len(jobs):
            update_progress_artifact(tracker, 100.0 * len(outcomes) / len(jobs))
            shown = time.monotonic()
        if progress:
            progress.finished(outcome)
    ordered = [outcomes[job.index] for job in jobs]
    failed = [o for o in ordered if o.audio is None]
    if failed:
        details = "; ".join(f"chunk {o.job.index}: {o.error}" for o in failed)
        raise PermanentError(
            f"{len(failed)} of {len(jobs)} chunks failed ({details}). "
            "Chunks that succeeded are cached: rerun to retry only these."
        )
    low = [o.job.index for o in ordered if o.audio and not o.audio.passed]
    if low and options.on_low_score == "fail":
        raise ValidationFailed(
            f"chunks {low} stayed below whisper_threshold "
            f"{options.generation.whisper_threshold} after every retry"
        )
    return ordered


def _run(task: Any, jobs: list[ChunkJob], backend: Backend) -> Iterator[ChunkOutcome]:
    """Map `task` over `jobs` and yield each job's outcome as its task run finishes.

    Memory stays flat however long the chapter: each future is dropped once read (prefect's
    as_completed would hold every one, and with it every chunk's audio, until the last) and
    the cycles it leaves are collected every COLLECT_EVERY chunks. What exists before the
    mapping is frozen out of those collections, so each one stays short (a full collection
    of a busy flow process holds the GIL for 0.1-0.3 s and stalled the endpoint's polling:
    a 200-chunk run went from 1.06 to 1.11 of ideal with full ones)."""
    gc.freeze()
    try:
        finished: queue.SimpleQueue[PrefectFuture[ChunkAudio]] = queue.SimpleQueue()
        pending: dict[UUID, ChunkJob] = {}
        if jobs:  # the list task.map returns is not kept: it would hold every future
            for future, job in zip(task.map(jobs, unmapped(backend)), jobs, strict=True):
                pending[future.task_run_id] = job
                future.add_done_callback(finished.put)
        while pending:
            future = finished.get()
            yield _outcome(future, pending.pop(future.task_run_id))
            if len(pending) % COLLECT_EVERY == 0:
                gc.collect()
    finally:
        gc.unfreeze()


def _outcome(future: PrefectFuture[ChunkAudio], job: ChunkJob) -> ChunkOutcome:
    future.wait()
    state = future.state
    if state.is_completed():
        audio = future.result().without_audio()
        return ChunkOutcome(job, audio, cached=state.name == "Cached")
    error = state.result(raise_on_failure=False)
    message = (
        f"{type(error).__name__}: {error}"
        if isinstance(error, BaseException)
        else str(state.message)
    )
    return ChunkOutcome(job, None, cached=False, error=message)


def assemble(prepared: PreparedText, outcomes: list[ChunkOutcome], run: Run) -> ChapterResult:
    """Phase 2.4 and 3: concatenate, verify, re-hear, encode, describe, publish."""
    options, output, stem = run.options, run.output, run.stem
    wav = output.path(f"{stem}.wav")
    placements = concatenate_chapter(
        [o.job for o in outcomes],
        run.storage,
        [c.break_after for c in prepared.chunks],
        options.audio,
        wav,
        options.loudness,
    )
    check = verify_audio(wav, prepared.word_count, options.loudness.target)
    validation = (
        validate_chapter(
            wav, prepared.chunks, placements, run.worker, output.path("validation.json")
        )
        if options.validate_chapter
        else None
    )
    title = prepared.chunks[0].display if prepared.chunks[0].heading else stem
    headings = [
        (c.display, p.start) for c, p in zip(prepared.chunks, placements, strict=True) if c.heading
    ]
    encode_outputs(
        wav, output, stem, title, markers(headings, title, check.duration_seconds), options.formats
    )
    header = _header(prepared, outcomes, run)
    records = write_reports(
        output, stem, prepared.chunks, placements, outcomes, check, validation, header
    )
    run_summary = summary(
        stem,
        output.final,
        records,
        check,
        validation,
        run.backend.name,
        run.settings.gpu_price_per_hour,
    )
    publish_artifacts(stem, records, run_summary)
    published = {
        location.rsplit("/", 1)[-1]: location for location in output.publish(last="metadata.json")
    }
    return ChapterResult(
        audio=published[f"{stem}.wav"],
        subtitles=published[f"{stem}.srt"],
        metadata=published["metadata.json"],
        segments=published["segments.json"],
        files=sorted(published.values()),
        duration_seconds=check.duration_seconds,
        chunks=len(outcomes),
        cache_hits=sum(o.cached for o in outcomes),
        flagged=[o.job.index for o in outcomes if o.audio and not o.audio.passed],
        wer=validation.wer if validation else None,
        validation_flagged=validation.flagged if validation else [],
        integrated_lufs=check.integrated_lufs,
        fingerprint=header["fingerprint"],
    )


def fingerprint(
    text_sha256: str,
    options: NarrationOptions,
    identity: str,
    voice: str | None,
    cast: Cast | None = None,
) -> str:
    """A hash of the input and of everything that shapes the output. Equal fingerprints
    mean the published outputs are current (a batch skips such chapters)."""
    payload = {
        "source": text_sha256,
        "identity": identity,
        "narrator": version("narrator"),
        "voice": voice.split("?")[0] if voice else None,
        "options": options.model_dump(mode="json", exclude={"refresh_cache"}),
    }
    if cast:
        payload["cast"] = cast.model_dump(mode="json")
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _header(prepared: PreparedText, outcomes: list[ChunkOutcome], run: Run) -> dict[str, Any]:
    text_sha256 = hashlib.sha256(prepared.text.encode()).hexdigest()
    voices = dict.fromkeys(o.job.request.voice for o in outcomes)  # in order of first use
    identity = " ; ".join(run.backend.identity(v) for v in voices)
    return {
        "fingerprint": fingerprint(text_sha256, run.options, identity, run.voice, run.cast),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": {
            "path": prepared.source,
            "characters": len(prepared.text),
            "words": prepared.word_count,
            "sha256": text_sha256,
        },
        # a presigned URL's query string is a credential: never written out
        "voice": run.voice.split("?")[0] if run.voice else None,
        "cast": run.cast.model_dump(mode="json") if run.cast else None,
        "backend": {
            "name": run.backend.name,
            "identity": identity,
        },
        "options": run.options.model_dump(mode="json"),
        "settings": {**run.settings.model_dump(mode="json"), **run.worker.model_dump(mode="json")},
        "versions": {
            "narrator": version("narrator"),
            "python": platform.python_version(),
            "prefect": version("prefect"),
        },
    }
