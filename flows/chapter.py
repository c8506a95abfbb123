"""narrate_chapter: one chapter file in, narrated audio with metadata and subtitles out.

phase 1   prepare_text                     decode, normalise, split into chunks
phase 2   generate_chunk (mapped)          one task per chunk, cached, retried if transient
          concatenate_chapter              trims, pauses, fades -> one WAV
phase 3   verify_audio, validate_chapter   check it, re-hear it
          encode_outputs, write_reports    MP3 and M4B; metadata, segments, subtitles
          publish                          every output moved into place, or none
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.logging import get_logger
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, Field

from flows.map_chunks import listening, map_chunks
from flows.parameters import checked_flow
from flows.services import Services, services
from gpu_worker.errors import InputError
from gpu_worker.redaction import CredentialFree
from tasks.artifacts import artifact_key, publish_artifacts, summary
from tasks.audio import concatenate_chapter
from tasks.backends import cancel_remote_jobs
from tasks.cast import Cast
from tasks.chunk_generation import ChunkOutcome, plan_jobs
from tasks.encode import encode_outputs, markers
from tasks.options import NarrationOptions
from tasks.outputs import MANIFEST, OutputDir
from tasks.reports import header, write_reports
from tasks.storage import is_s3, output_stem
from tasks.takes import TAKES, Edits, TakePlan, TakesFile, check_indices, parse_takes
from tasks.text import PreparedText, prepare_text
from tasks.text.lexicon import Lexicon
from tasks.validation import ChunkFinding, validate_chapter
from tasks.verify import verify_audio
from tasks.voice_resolution import chunk_requests

__all__ = ["ChapterResult", "NarrationOptions", "listening", "narrate_chapter"]

# Threads for mapped chunk tasks: enough that the endpoint's window (W + a few) stays full
# while finished tasks record their results. Real concurrency is the backend's (local_workers
# for the local backend); this only caps how many threads wait for it.
MAX_TASK_THREADS = 64


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

    voice: str | None
    cast: Cast | None
    options: NarrationOptions
    services: Services
    output: OutputDir
    stem: str
    storage: Path | str  # the chunk cache, where each chunk's audio is read from to join it
    takes: TakesFile | None = None  # takes.json, published with the chapter
    known: dict[int, ChunkFinding] | None = None  # the check need not hear these again


def _cancel_remote_jobs(flow: Any, flow_run: Any, state: Any) -> None:
    """When a run is cancelled or crashes, stop paying for its jobs still on the endpoint."""
    cancelled = cancel_remote_jobs()
    if cancelled:
        get_logger("narrator").warning("cancelled %d RunPod jobs still in flight", cancelled)


@checked_flow(
    name="narrate-chapter",
    on_cancellation=[_cancel_remote_jobs],
    on_crashed=[_cancel_remote_jobs],
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_TASK_THREADS),
)
def narrate_chapter(
    source: str,
    out_dir: str | None = None,
    voice: CredentialFree | None = None,
    options: NarrationOptions = NarrationOptions(),  # noqa: B008 - frozen, shown in the UI
    cast: Cast | None = None,
    lexicon: Lexicon | None = None,
) -> ChapterResult:
    """Narrate one chapter into audio, subtitles and a quality record.

    Args:
        source: The chapter: a UTF-8 text or markdown file, as a path on the worker or an
            s3://bucket/key URI.
        out_dir: Folder or s3:// prefix for the outputs. Empty: out/<chapter name>/ in
            the worker's working directory.
        voice: A built-in or library voice name, or a reference clip to clone (https URL,
            s3:// URI, or a path on the workers' voices volume). Never a presigned URL: the
            run's parameters are stored and shown; an s3:// URI is read with the worker's
            own credentials. Empty: the engine's default voice.
        options: How to generate, check, join and deliver the audio.
        cast: For a dialogue: the narrator's and each speaker's voice. Lines tagged
            `NAME: ...` or `[Name] ...` are read by that speaker (see tasks/cast.py).
        lexicon: How to say names and rare words: {"Hermione": "Her-my-oh-nee"}, over the
            `lexicon.toml` beside the chapter, if any (see tasks/text/lexicon.py).
    """
    return narrate(source, out_dir, voice, options, cast, lexicon)


@dataclass(frozen=True)
class Review:
    """A redo of a chapter as it was published (flows/redo.py): what to change, and what
    of the published set still holds for the chunks that do not change."""

    edits: Edits
    backend: str  # the backend it was narrated on: another's cache keys all differ
    source_sha256: str  # the text it was narrated from: a redo of other text is refused
    first_takes: dict[str, dict[str, Any]]  # take records from metadata.json, by cache key
    published: list[tuple[str, str | None]]  # each chunk's cache key and audio hash
    findings: list[ChunkFinding] | None  # what the published check heard, per chunk
    manifest_sha256: str  # of the manifest of the set all of this was read from

    def check_current(self, manifest: bytes | None) -> None:
        """Under the chapter's lock: the set is still the one this review was read from."""
        if manifest is None or hashlib.sha256(manifest).hexdigest() != self.manifest_sha256:
            raise InputError(
                "the chapter was published again while this redo started; run the redo again"
            )


def narrate(
    source: str,
    out_dir: str | None,
    voice: str | None,
    options: NarrationOptions,
    cast: Cast | None,
    lexicon: Lexicon | None,
    review: Review | None = None,
) -> ChapterResult:
    """The chapter flows' steps: narrate_chapter's, and redo_chunks' with a `review`."""
    built = services()
    settings = built.settings
    # kept absolute in metadata.json: a redo may run in another directory
    source = str(Path(source).absolute()) if source and not is_s3(source) else source
    prepared = prepare_text(
        source,
        options.chunking,
        settings.max_chapter_bytes,
        settings.s3_endpoint_url,
        list(cast.speakers) if cast else None,
        lexicon,
    )
    if review and hashlib.sha256(prepared.text.encode()).hexdigest() != review.source_sha256:
        raise InputError(
            f"{source} has changed since this chapter was narrated: its chunks are not the "
            "ones reviewed; narrate it again with `narrator run` (chosen and kept takes of "
            "unchanged chunks stay)"
        )
    if review and built.backend.name != review.backend:
        raise InputError(
            f"this chapter was narrated on the {review.backend} backend, and this run uses "
            f"{built.backend.name}: redo it on {review.backend} (narrator redo --backend, "
            "or NARRATOR_BACKEND)"
        )
    generation = options.generation
    if built.backend.billed_per_take and "n_candidates" not in generation.model_fields_set:
        generation = generation.model_copy(update={"n_candidates": 1})  # unless asked for
        # recorded as used (metadata.json): a redo asks for the same takes again
        options = options.model_copy(update={"generation": generation})
    requests = chunk_requests(
        prepared.chunks, voice, generation, cast, built.library, built.backend.uses_neighbours
    )
    if review:
        check_indices(review.edits, len(requests))
    jobs = plan_jobs(requests, built.backend)
    stem = output_stem(source)
    storage = built.cache()
    # before any chunk is generated, so an unusable or busy output location costs nothing
    output = built.output(out_dir or str(Path("out") / stem))
    try:
        if review:
            review.check_current(output.read_published(MANIFEST))
        published = output.read_published(TAKES)
        takes = TakePlan(
            parse_takes(published, f"{output.final}/{TAKES}"), review.edits if review else None
        )
        if published is not None or review:
            takes.match(jobs)
            jobs = plan_jobs(requests, built.backend, takes.take_for)
        outcomes = map_chunks(
            jobs,
            built.backend,
            storage,
            settings,
            options,
            stem,
            kept=takes.kept(),
            generate_only=review.edits.redo if review else None,
        )
        for outcome in outcomes:
            takes.record(outcome.job, outcome.audio)
        if review:
            takes.fill(review.first_takes)
        known = unchanged_findings(outcomes, review)
        run = Run(voice, cast, options, built, output, stem, storage, takes.file(), known)
        result = assemble(prepared, outcomes, run)
    except BaseException as e:
        full = output.full_disk(e)
        output.discard()
        if full:
            raise full from e
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


def unchanged_findings(
    outcomes: list[ChunkOutcome], review: Review | None
) -> dict[int, ChunkFinding]:
    """What the published check heard of each chunk whose audio a redo leaves as it was: the
    same cache entry, holding the same audio (another run's --refresh may rewrite one)."""
    if review is None or review.findings is None:
        return {}
    return {
        o.job.index: finding
        for o, published, finding in zip(outcomes, review.published, review.findings, strict=False)
        if o.audio
        and (o.job.cache_key, o.audio.wav_sha256) == published
        and published[1] is not None
        and finding.index == o.job.index
    }


def speed(speaker: str | None, run: Run) -> float:
    """The pace a chunk is played at: its speaker's role's, else the run's."""
    role = run.cast.role(speaker) if run.cast else None
    return role.speed if role and role.speed is not None else run.options.audio.speed


def assemble(prepared: PreparedText, outcomes: list[ChunkOutcome], run: Run) -> ChapterResult:
    """Phase 2.4 and 3: concatenate, verify, re-hear, encode, describe, publish."""
    options, output, stem = run.options, run.output, run.stem
    wav = output.path(f"{stem}.wav")
    speeds = [speed(c.speaker, run) for c in prepared.chunks]
    placements = concatenate_chapter(
        [o.job for o in outcomes],
        run.storage,
        [
            c.pause_seconds if c.pause_seconds is not None else c.break_after
            for c in prepared.chunks
        ],
        options.audio,
        wav,
        options.loudness,
        {o.job.index: o.audio for o in outcomes if o.not_cached and o.audio},
        speeds,
    )
    uncached = [o.job.index for o in outcomes if o.not_cached]
    if uncached:
        get_run_logger().warning(
            "%d chunks are not in the chunk cache (%s): this chapter is whole, and a rerun "
            "generates them again",
            len(uncached),
            next(o.not_cached for o in outcomes if o.not_cached),
        )
    words = [max(1, len(c.text.split())) for c in prepared.chunks]
    pace = sum(s * w for s, w in zip(speeds, words, strict=True)) / sum(words)  # by words read
    check = verify_audio(wav, prepared.word_count, options.loudness.target, pace)
    validation = (
        validate_chapter(
            wav,
            prepared.chunks,
            placements,
            run.services.worker,
            output.path("validation.json"),
            artifact_key(stem, "validation"),
            run.known,
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
    built = run.services
    settings = {**built.settings.model_dump(mode="json"), **built.worker.model_dump(mode="json")}
    description = header(prepared, outcomes, built.backend, options, run.voice, run.cast, settings)
    if run.takes is not None:
        output.write_text(TAKES, run.takes.model_dump_json(indent=2))
    records = write_reports(
        output, stem, prepared.chunks, placements, outcomes, check, validation, description
    )
    run_summary = summary(
        stem,
        output.final,
        records,
        check,
        validation,
        built.backend.name,
        built.settings.gpu_price_per_hour,
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
        fingerprint=description["fingerprint"],
    )
