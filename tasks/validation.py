"""Phase 3: the finished chapter heard end to end and compared with its text, the check
people otherwise make by hand (seed 001's validation protocol).

The chapter is heard in windows of about WINDOW_SECONDS, cut in the pauses between chunks
and read from the file one at a time, several side by side (`CHECK_WORKERS` on the cores
there are): memory stays flat however long the chapter (a 3-hour chapter heard whole needed
~8-11 GB) and the check runs on every core. Each heard word goes to the window's chunk whose
span holds it (Placement), and each chunk's text is aligned with what was heard in its
span. That keeps the alignment linear in the chapter's length, and names the chunk where
anything went wrong. A flagged chunk is heard once more on its own before it is reported
(`recheck`):
    content_loss   words of the text not heard
    repetition     a phrase of the text heard twice
    garble         words heard wrong, or heard that are not in the text
"""

import itertools
import json
import os
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from functools import cache
from pathlib import Path

import numpy as np
import soundfile as sf
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from gpu_worker import scoring
from gpu_worker.qc import REPEATED_WORDS
from gpu_worker.respelling import as_written
from gpu_worker.settings import WorkerSettings
from gpu_worker.validator import Validator, Word
from tasks.audio import Placement
from tasks.text import Chunk

MIN_WORDS = 3  # a flag needs at least this many words wrong ...
LOSS_SHARE = 0.2  # ... and this share of the chunk's words missing (content_loss)
GARBLE_SHARE = 0.35  # ... or this share wrong or extra (garble)
WINDOW_SECONDS = 120.0  # the chapter is heard in windows about this long, cut between chunks
CHECK_WORKERS = max(1, min(4, os.cpu_count() or 1))  # windows heard at once


@dataclass(frozen=True)
class ChunkFinding:
    index: int
    start: float
    end: float
    words: int
    wer: float
    deletions: int
    insertions: int
    substitutions: int
    flags: list[str]
    heard: str
    rechecked: bool = False  # flagged in the chapter, then heard again on its own


def read_findings(raw: bytes) -> list[ChunkFinding]:
    """The findings of a published validation.json, per chunk."""
    return [ChunkFinding(**f) for f in json.loads(raw)["chunks"]]


@dataclass(frozen=True)
class ChapterValidation:
    wer: float
    words: int
    flagged: list[int]
    transcribe_seconds: float
    chunks: list[ChunkFinding]


def assign(heard: list[Word], placements: list[Placement]) -> list[list[Word]]:
    """Each heard word to the chunk whose span holds its middle (else the nearest one)."""
    groups: list[list[Word]] = [[] for _ in placements]
    for word in heard:
        middle = (word.start + word.end) / 2
        nearest = min(
            range(len(placements)),
            key=lambda i: (
                0.0
                if placements[i].start <= middle <= placements[i].end
                else min(abs(middle - placements[i].start), abs(middle - placements[i].end))
            ),
        )
        groups[nearest].append(word)
    return groups


def judge(chunk: Chunk, placement: Placement, heard: list[Word]) -> ChunkFinding:
    text = " ".join(w.text for w in heard)
    reference = scoring.words(chunk.text)
    hypothesis = as_written(scoring.words(text), chunk.respellings)
    alignment = scoring.align(reference, hypothesis)
    n = max(1, len(reference))
    flags = []
    if alignment.deletions >= max(MIN_WORDS, LOSS_SHARE * n):
        flags.append("content_loss")
    if alignment.repeated_words(reference, hypothesis) >= REPEATED_WORDS:
        flags.append("repetition")
    if alignment.substitutions + alignment.insertions >= max(MIN_WORDS, GARBLE_SHARE * n):
        flags.append("garble")
    return ChunkFinding(
        chunk.index,
        placement.start,
        placement.end,
        len(reference),
        round(alignment.wer, 3),
        alignment.deletions,
        alignment.insertions,
        alignment.substitutions,
        flags,
        text,
    )


@cache
def _validator(settings: WorkerSettings) -> Validator:
    return Validator(settings, workers=CHECK_WORKERS)


@dataclass(frozen=True)
class Window:
    """Chunks first..last (inclusive) and the stretch of the chapter that holds them, from
    the middle of the pause before the first to the middle of the pause after the last."""

    first: int
    last: int
    start: float
    end: float


def windows(placements: list[Placement], length: float = WINDOW_SECONDS) -> list[Window]:
    """Consecutive chunks grouped into windows of at least `length` seconds (the last one
    takes what is left), cut in the middle of the pause between two chunks."""
    cuts = [(a.end + b.start) / 2 for a, b in itertools.pairwise(placements)]
    found, first, start = [], 0, 0.0
    for i, cut in enumerate(cuts):
        if cut - start >= length:
            found.append(Window(first, i, start, cut))
            first, start = i + 1, cut
    found.append(Window(first, len(placements) - 1, start, float("inf")))
    return found


def read_span(path: Path, start: float, end: float) -> tuple[np.ndarray, int]:
    """Seconds start..end of the WAV at `path` (end may be inf), as float32."""
    with sf.SoundFile(str(path)) as f:
        first = min(f.frames, int(start * f.samplerate))
        last = f.frames if end == float("inf") else min(f.frames, int(end * f.samplerate))
        f.seek(first)
        return f.read(last - first, dtype="float32"), f.samplerate


def hear_window(
    path: Path,
    window: Window,
    chunks: list[Chunk],
    placements: list[Placement],
    validator: Validator,
) -> list[ChunkFinding]:
    """Transcribe one window, judge each of its chunks by the words heard in its span and
    hear a flagged chunk once more on its own."""
    audio, rate = read_span(path, window.start, window.end)
    # No hotwords here: on long audio they made Whisper drop text (the corpus's chapter WER
    # rose on every text); the candidates were already scored with them.
    heard = [
        replace(w, start=w.start + window.start, end=w.end + window.start)
        for w in validator.transcribe(audio, rate).words
    ]
    span = range(window.first, window.last + 1)
    local = [placements[i] for i in span]
    findings = [
        judge(chunks[i], placements[i], words)
        for i, words in zip(span, assign(heard, local), strict=True)
    ]
    return [
        recheck(f, chunks[f.index], placements[f.index], audio, rate, window.start, validator)
        if f.flags
        else f
        for f in findings
    ]


def validate(
    path: Path,
    chunks: list[Chunk],
    placements: list[Placement],
    validator: Validator,
    window: float = WINDOW_SECONDS,
    known: Mapping[int, ChunkFinding] | None = None,
) -> ChapterValidation:
    """The chapter heard window by window. A window whose every chunk is in `known` (what an
    earlier check heard of audio that has not changed since: a redo's other chunks) is not
    heard again; its findings are moved to where its chunks are now."""
    started = time.perf_counter()
    known = known or {}

    def hear(w: Window) -> list[ChunkFinding]:
        span = range(w.first, w.last + 1)
        if all(i in known for i in span):
            return [
                replace(known[i], start=placements[i].start, end=placements[i].end) for i in span
            ]
        return hear_window(path, w, chunks, placements, validator)

    with ThreadPoolExecutor(validator.workers) as pool:
        heard = pool.map(hear, windows(placements, window))
        findings = [finding for window in heard for finding in window]
    seconds = time.perf_counter() - started
    errors = sum(f.deletions + f.insertions + f.substitutions for f in findings)
    total = sum(f.words for f in findings)
    return ChapterValidation(
        round(errors / max(1, total), 4),
        total,
        [f.index for f in findings if f.flags],
        round(seconds, 1),
        findings,
    )


def recheck(
    finding: ChunkFinding,
    chunk: Chunk,
    placement: Placement,
    audio: np.ndarray,
    rate: int,
    offset: float,
    validator: Validator,
) -> ChunkFinding:
    """Hear a flagged chunk's span on its own, as a person re-listens to a suspicious
    passage. Whisper's long-form pass sometimes skips a sentence that is there (seen on the
    sample chapter); a real problem, such as a swapped chunk, is heard again. `audio` starts
    `offset` seconds into the chapter."""
    start, end = max(0.0, placement.start - 0.2 - offset), placement.end + 0.2 - offset
    span = audio[int(start * rate) : int(end * rate)]
    again = judge(chunk, placement, list(validator.transcribe(span, rate).words))
    return replace(
        again if len(again.flags) < len(finding.flags) or not again.flags else finding,
        rechecked=True,
    )


def report(result: ChapterValidation) -> str:
    """The validation as markdown: the figures, and a row per flagged chunk."""
    lines = [
        f"**Whole-chapter check**: WER {100 * result.wer:.2f} % over {result.words} words; "
        f"{len(result.flagged)} chunk(s) flagged.",
        "",
    ]
    flagged = [f for f in result.chunks if f.flags]
    if flagged:
        lines += ["| chunk | at | flags | WER | heard |", "|---:|---:|---|---:|---|"]
        lines += [
            f"| {f.index} | {f.start:.1f} s | {', '.join(f.flags)} | "
            f"{100 * f.wer:.0f} % | {f.heard[:80]} |"
            for f in flagged
        ]
    return "\n".join(lines)


@task(name="validate-chapter", cache_policy=NONE)
def validate_chapter(
    path: Path,
    chunks: list[Chunk],
    placements: list[Placement],
    settings: WorkerSettings,
    json_path: Path,
    artifact: str,
    known: Mapping[int, ChunkFinding] | None = None,
) -> ChapterValidation:
    """Transcribe the chapter, compare it with the text, write the JSON report beside the
    audio and publish it as the Prefect artifact `artifact` (a key). Windows whose chunks
    are all `known` are not heard again (see `validate`)."""
    result = validate(path, chunks, placements, _validator(settings), known=known)
    json_path.write_text(json.dumps(asdict(result), indent=2, ensure_ascii=False))
    create_markdown_artifact(
        report(result),
        key=artifact,
        description="Whole-chapter transcription compared with the text",
    )
    return result
