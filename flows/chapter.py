"""narrate_chapter: one chapter file in, narrated audio with metadata and subtitles out.

phase 1   prepare_text                     decode, normalise, split into chunks
phase 2   generate_chunk (mapped)          one task per chunk, cached, retried if transient
          concatenate_chapter              trims, pauses, fades -> one WAV
phase 3   verify_audio, write_reports      check it; metadata, segments, subtitles
          publish                          every output moved into place, or none
"""

import hashlib
import platform
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal, Protocol

from prefect import flow, get_run_logger, unmapped
from prefect.futures import PrefectFuture, as_completed
from prefect.logging import get_logger
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, ConfigDict, Field

from gpu_worker.errors import PermanentError, ValidationFailed
from gpu_worker.schema import GenerateRequest, GenerationParams
from gpu_worker.settings import WorkerSettings
from tasks.audio import AudioOptions, concatenate_chapter
from tasks.backends import Backend, cancel_remote_jobs, open_backend
from tasks.generate import (
    ChunkAudio,
    ChunkJob,
    ChunkOutcome,
    generate_chunk,
    plan_jobs,
    voice_fields,
)
from tasks.post import verify_audio, write_reports
from tasks.settings import NarratorSettings
from tasks.storage import OutputDir
from tasks.text import ChunkingOptions, PreparedText, prepare_text

# Threads for mapped chunk tasks. Real concurrency is the backend's (local_workers for the
# local backend); this only caps how many threads wait for it.
MAX_TASK_THREADS = 32


class NarrationOptions(BaseModel):
    """Per-run choices. Every field has a default that works; the Prefect UI shows these."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    generation: GenerationParams = Field(default_factory=GenerationParams)
    chunking: ChunkingOptions = Field(default_factory=ChunkingOptions)
    audio: AudioOptions = Field(default_factory=AudioOptions)
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
    audio: Path
    subtitles: Path
    metadata: Path
    segments: Path
    duration_seconds: float
    chunks: int
    cache_hits: int
    flagged: list[int]


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
) -> ChapterResult:
    """Narrate the chapter file `source` into `out_dir` (default: out/<chapter name>/).

    `voice` is a built-in voice name, or a reference clip to clone (https URL, s3:// URI,
    or a path on the workers' voices volume); unset, the engine's default voice.
    """
    settings, worker = NarratorSettings(), WorkerSettings()
    prepared = prepare_text(source, options.chunking, settings.max_chapter_bytes)
    backend = open_backend(settings, worker)
    template = GenerateRequest(text=".", **voice_fields(voice), **options.generation.model_dump())
    jobs = plan_jobs([c.text for c in prepared.chunks], template, backend)
    outcomes = generate(jobs, backend, settings, options)
    stem = output_stem(source)
    output = OutputDir(Path(out_dir) if out_dir else Path("out") / stem)
    try:
        result = assemble(
            prepared, outcomes, output, stem, options, settings, worker, backend, voice
        )
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


def generate(
    jobs: list[ChunkJob], backend: Backend, settings: NarratorSettings, options: NarrationOptions
) -> list[ChunkOutcome]:
    """Map one generation task per chunk and wait for all of them; fail naming every chunk
    that failed (after the others have finished, so their audio is cached for the rerun)."""
    progress = progress_listener.get()
    if progress:
        progress.planned(len(jobs))
    task = generate_chunk.with_options(
        result_storage=settings.cache_dir, refresh_cache=options.refresh_cache
    )
    futures = task.map(jobs, unmapped(backend))
    by_run = {f.task_run_id: job for f, job in zip(futures, jobs, strict=True)}
    outcomes: dict[int, ChunkOutcome] = {}
    for future in as_completed(futures):
        outcome = _outcome(future, by_run[future.task_run_id])
        outcomes[outcome.job.index] = outcome
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


def _outcome(future: PrefectFuture[ChunkAudio], job: ChunkJob) -> ChunkOutcome:
    future.wait()
    state = future.state
    if state.is_completed():
        return ChunkOutcome(job, future.result(), cached=state.name == "Cached")
    error = state.result(raise_on_failure=False)
    message = (
        f"{type(error).__name__}: {error}"
        if isinstance(error, BaseException)
        else str(state.message)
    )
    return ChunkOutcome(job, None, cached=False, error=message)


def assemble(
    prepared: PreparedText,
    outcomes: list[ChunkOutcome],
    output: OutputDir,
    stem: str,
    options: NarrationOptions,
    settings: NarratorSettings,
    worker: WorkerSettings,
    backend: Backend,
    voice: str | None,
) -> ChapterResult:
    """Phase 2.4 and 3: concatenate, verify, describe, publish."""
    audio = [o.audio for o in outcomes if o.audio]
    wav = output.path(f"{stem}.wav")
    placements = concatenate_chapter(
        audio, [c.break_after for c in prepared.chunks], options.audio, wav
    )
    check = verify_audio(wav, prepared.word_count)
    write_reports(
        output,
        stem,
        prepared.chunks,
        placements,
        outcomes,
        check,
        _header(prepared, options, settings, worker, backend, voice),
    )
    published = {p.name: p for p in output.publish(last="metadata.json")}
    return ChapterResult(
        audio=published[f"{stem}.wav"],
        subtitles=published[f"{stem}.srt"],
        metadata=published["metadata.json"],
        segments=published["segments.json"],
        duration_seconds=check.duration_seconds,
        chunks=len(outcomes),
        cache_hits=sum(o.cached for o in outcomes),
        flagged=[o.job.index for o in outcomes if o.audio and not o.audio.passed],
    )


def _header(
    prepared: PreparedText,
    options: NarrationOptions,
    settings: NarratorSettings,
    worker: WorkerSettings,
    backend: Backend,
    voice: str | None,
) -> dict[str, Any]:
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": {
            "path": prepared.source,
            "characters": len(prepared.text),
            "words": prepared.word_count,
            "sha256": hashlib.sha256(prepared.text.encode()).hexdigest(),
        },
        "voice": voice.split("?")[0] if voice else None,  # a presigned URL's query is a secret
        "backend": {
            "name": backend.name,
            "identity": backend.identity(voice_fields(voice)["voice"]),
        },
        "options": options.model_dump(mode="json"),
        "settings": {**settings.model_dump(mode="json"), **worker.model_dump(mode="json")},
        "versions": {
            "narrator": version("narrator"),
            "python": platform.python_version(),
            "prefect": version("prefect"),
        },
    }
