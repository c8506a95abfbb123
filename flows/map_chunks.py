"""Phase 2 of a chapter: cached chunks reused, a generate-chunk task mapped per other chunk.

Each outcome is collected as its task run finishes.

Memory stays flat however long the chapter: a run keeps each chunk's record without its
audio (concatenation reads the audio from the cache), drops each future once read, and
collects the reference cycles futures leave every COLLECT_EVERY chunks (docs/PERFORMANCE.md).
"""

import gc
import queue
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Protocol, cast
from uuid import UUID

from prefect import unmapped
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import PrefectFuture
from prefect.logging import get_logger

from gpu_worker.errors import InputError, PermanentError, ValidationFailed
from gpu_worker.redaction import redact
from tasks.artifacts import artifact_key
from tasks.backends import Backend
from tasks.cache import CacheLookup, ChunkAudio, ChunkJob, find_cached, task_storage, unwritten
from tasks.chunk_generation import ChunkOutcome, generate_chunk
from tasks.options import NarrationOptions
from tasks.settings import NarratorSettings

# Seconds between updates of the progress artifact (each is a write the Prefect server's
# database serialises: one per chunk was half of a nightly batch's API calls).
PROGRESS_EVERY = 2.0
# Finished chunk tasks between two garbage collections of the cycles futures leave.
COLLECT_EVERY = 64
# Seconds the flow waits for a chunk at a time, so that it notices a stop signal promptly
WAKE_EVERY = 0.2


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


def map_chunks(
    jobs: list[ChunkJob],
    backend: Backend,
    storage: Path | str,
    settings: NarratorSettings,
    options: NarrationOptions,
    stem: str,
    kept: Collection[int] = (),
    generate_only: Collection[int] | None = None,
) -> list[ChunkOutcome]:
    """Reuse every cached chunk, map one generation task per other chunk and wait for all
    of them; fail naming every chunk that failed (after the others have finished, so their
    audio is cached for the rerun). A progress artifact follows the chunks as they finish.
    Outcomes keep no audio (concatenation reads it from the cache), except a chunk the
    cache could not store (a full disk): its audio is kept, not lost.

    Chunks in `kept` (takes a person chose to keep) are read from the cache even when
    `options.refresh_cache` says to regenerate. With `generate_only` (a redo), a run that
    would have to generate any other chunk is refused before it generates anything."""
    progress = progress_listener.get()
    if progress:
        progress.planned(len(jobs))
    # with --refresh, a kept take's entry is read, and so not rewritten by a chunk of the
    # same text and voice (same key) that is not kept
    kept_keys = {job.cache_key for job in jobs if job.index in kept}
    looked_up = (
        [job for job in jobs if job.cache_key in kept_keys] if options.refresh_cache else jobs
    )
    cached = find_cached(looked_up, storage) if looked_up else CacheLookup({}, {})
    outcomes = {
        job.index: ChunkOutcome(job, cached.found[job.index], cached=True)
        for job in jobs
        if job.index in cached.found
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
    if generate_only is not None:
        others = sorted(job.index for job in missing if job.index not in generate_only)
        if others:
            raise InputError(
                f"chunks {others} are not in the chunk cache at {storage}, and a redo would "
                "read them anew too. If the chapter was narrated with another cache, give "
                "that one (--cache-dir, NARRATOR_CACHE_DIR); else narrate it again with "
                "`narrator run`"
            )
    if backend.billed_per_take and missing:  # before spending: what this run will cost
        estimate = sum(len(job.request.text) * job.request.n_candidates for job in missing)
        get_logger("narrator").info(
            "%s: %d of %d chunks to generate, about %s characters billed (one round; "
            "retried takes cost more)", backend.name, len(missing), len(jobs), f"{estimate:,}"
        )  # fmt: skip
    backend.prepare(len(missing))
    task = generate_chunk.with_options(
        result_storage=task_storage(storage),
        refresh_cache=options.refresh_cache,
        retries=settings.chunk_retries,
        retry_delay_seconds=list(settings.chunk_retry_delays),
    )
    # a damaged entry is not read again by the task: its new audio overwrites it
    replacing = task.with_options(refresh_cache=True)
    batches = [
        (task, [job for job in missing if job.index not in cached.damaged]),
        (replacing, [job for job in missing if job.index in cached.damaged]),
    ]
    shown = time.monotonic()
    for outcome in _run(batches, backend):
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


def _run(batches: list[tuple[Any, list[ChunkJob]]], backend: Backend) -> Iterator[ChunkOutcome]:
    """Map each task over its jobs and yield each job's outcome as its task run finishes.

    Each future is dropped once read (prefect's as_completed would hold every one, and with
    it every chunk's audio, until the last) and the cycles it leaves are collected every
    COLLECT_EVERY chunks. What exists before the mapping is frozen out of those collections,
    so each one stays short: a full collection holds the GIL long enough to stall the
    endpoint's polling."""
    gc.freeze()
    try:
        finished: queue.SimpleQueue[PrefectFuture[ChunkAudio]] = queue.SimpleQueue()
        pending: dict[UUID, ChunkJob] = {}
        for task, jobs in batches:
            if not jobs:
                continue
            # the list task.map returns is not kept: it would hold every future
            for future, job in zip(task.map(jobs, unmapped(backend)), jobs, strict=True):
                pending[future.task_run_id] = job
                future.add_done_callback(finished.put)
        while pending:
            try:  # woken often: a signal (SIGTERM, Ctrl-C) is handled only between waits
                future = finished.get(timeout=WAKE_EVERY)
            except queue.Empty:
                continue
            yield _outcome(future, pending.pop(future.task_run_id))
            if len(pending) % COLLECT_EVERY == 0:
                gc.collect()
    except BaseException as stopped:
        if not isinstance(stopped, Exception):  # the process is told to stop
            # before Prefect's task runner waits for its threads: their jobs end now
            cancelled = backend.stop()
            get_logger("narrator").warning("stopping: %d jobs in flight cancelled", cancelled)
        raise
    finally:
        gc.unfreeze()


def _outcome(future: PrefectFuture[ChunkAudio], job: ChunkJob) -> ChunkOutcome:
    future.wait()
    state = future.state
    if state.is_completed():
        audio = future.result()
        problem = unwritten(job.cache_key)
        if problem is None:
            return ChunkOutcome(job, audio.without_audio(), cached=state.name == "Cached")
        get_logger("narrator").warning(
            "chunk %d is not in the cache (%s): its audio is kept for this run only",
            job.index,
            problem,
        )
        return ChunkOutcome(job, audio, cached=False, not_cached=problem)
    error = state.result(raise_on_failure=False)
    message = (
        f"{type(error).__name__}: {error}"
        if isinstance(error, BaseException)
        else str(state.message)
    )
    return ChunkOutcome(job, None, cached=False, error=redact(message))
