"""Phase 3: check the chapter audio and describe it: metadata, segments, subtitles.

The functions are pure or read one file; `write_reports` stages their output in the run's
OutputDir, which the flow publishes once everything is written.
"""

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from prefect import task
from prefect.cache_policies import NONE

from gpu_worker.errors import PermanentError
from tasks.audio import Placement
from tasks.generate import ChunkOutcome
from tasks.storage import OutputDir
from tasks.text import Chunk

SILENT_DBFS = -45.0
WORDS_PER_MINUTE = (60.0, 300.0)  # a narration outside this pace has lost or gained audio
LINE_CHARS = 42
CUE_LINES = 2


@dataclass(frozen=True)
class AudioCheck:
    duration_seconds: float
    sample_rate: int
    rms_dbfs: float
    peak_dbfs: float
    words_per_minute: float
    problems: list[str]


def check_audio(path: Path, word_count: int) -> AudioCheck:
    """Decode the whole file (block by block) and judge its level and pace."""
    try:
        info = sf.info(str(path))
        total, squares, peak = 0, 0.0, 0.0
        for block in sf.blocks(str(path), blocksize=1 << 16, dtype="float32", always_2d=True):
            mono = block.mean(axis=1)
            total += mono.size
            squares += float(np.sum(np.square(mono, dtype=np.float64)))
            peak = max(peak, float(np.max(np.abs(mono), initial=0.0)))
    except (sf.LibsndfileError, RuntimeError) as e:
        raise PermanentError(f"{path}: the chapter audio does not decode: {e}") from e
    duration = total / info.samplerate
    rms = math.sqrt(squares / total) if total else 0.0
    rms_db = 20 * math.log10(rms) if rms > 0 else -math.inf
    wpm = word_count / (duration / 60) if duration > 0 else 0.0
    problems = []
    if rms_db < SILENT_DBFS:
        problems.append(f"silent: RMS {rms_db:.1f} dBFS is below {SILENT_DBFS} dBFS")
    slowest, fastest = WORDS_PER_MINUTE
    if not slowest <= wpm <= fastest:
        problems.append(
            f"implausible duration: {duration:.1f} s for {word_count} words is "
            f"{wpm:.0f} words per minute (expected {slowest:.0f}-{fastest:.0f})"
        )
    return AudioCheck(
        round(duration, 3),
        info.samplerate,
        round(rms_db, 2),
        round(20 * math.log10(peak), 2) if peak > 0 else -math.inf,
        round(wpm, 1),
        problems,
    )


@task(name="verify-audio", cache_policy=NONE)
def verify_audio(path: Path, word_count: int) -> AudioCheck:
    """The chapter decodes, is not silent, and lasts about as long as its words need."""
    check = check_audio(path, word_count)
    if check.problems:
        raise PermanentError(f"the chapter audio failed its checks: {'; '.join(check.problems)}")
    return check


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: list[str]


def wrap(words: list[str], width: int = LINE_CHARS) -> list[str]:
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def _split_cues(text: str) -> list[list[str]]:
    """Words grouped into cues of at most CUE_LINES lines of LINE_CHARS; a cue also ends
    after a sentence once it is half full."""
    cues: list[list[str]] = [[]]
    for word in text.split():
        if cues[-1] and len(wrap([*cues[-1], word])) > CUE_LINES:
            cues.append([])
        cues[-1].append(word)
        if re.search(r"[.!?][\"'”’)]*$", word) and len(" ".join(cues[-1])) >= LINE_CHARS:
            cues.append([])
    return [c for c in cues if c]


def subtitle_cues(segments: list[tuple[str, float, float]]) -> list[Cue]:
    """Cues for (text, start, end) segments; a segment's time is shared among its cues in
    proportion to their length (word timings replace this when the validator gives them)."""
    cues = []
    for text, start, end in segments:
        groups = _split_cues(text)
        weights = [len(" ".join(g)) + 1 for g in groups]
        at = start
        for group, weight in zip(groups, weights, strict=True):
            length = (end - start) * weight / sum(weights)
            cues.append(Cue(round(at, 3), round(at + length, 3), wrap(group)))
            at += length
    return cues


def _timestamp(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def format_srt(cues: list[Cue]) -> str:
    return "".join(
        f"{i}\n{_timestamp(c.start, ',')} --> {_timestamp(c.end, ',')}\n"
        + "\n".join(c.lines)
        + "\n\n"
        for i, c in enumerate(cues, 1)
    )


def segments(
    chunks: list[Chunk], placements: list[Placement], outcomes: list[ChunkOutcome]
) -> list[dict[str, Any]]:
    """One entry per chunk: where it is heard, what it says, how well it was read."""
    return [
        {
            "index": c.index,
            "start": p.start,
            "end": p.end,
            "text": c.display,
            "spoken_text": c.text,
            "break_after": c.break_after,
            "span": list(c.span),
            "score": o.audio.best_score if o.audio else None,
            "passed": o.audio.passed if o.audio else None,
        }
        for c, p, o in zip(chunks, placements, outcomes, strict=True)
    ]


def chunk_record(chunk: Chunk, placement: Placement, outcome: ChunkOutcome) -> dict[str, Any]:
    audio = outcome.audio
    assert audio is not None  # reports are only written when every chunk has audio
    return {
        "index": chunk.index,
        "text": chunk.text,
        "display": chunk.display,
        "span": list(chunk.span),
        "break_after": chunk.break_after,
        "heading": chunk.heading,
        "start": placement.start,
        "end": placement.end,
        "cache_hit": outcome.cached,
        "cache_key": outcome.job.cache_key,
        "best_score": audio.best_score,
        "passed": audio.passed,
        "transcript": audio.transcript,
        "scores": [c.score for c in audio.candidates],
        "retries": audio.retries_used,
        "attempts": 0 if outcome.cached else audio.attempts,
        "generated_seconds": audio.duration_seconds,
        "candidates": [c.model_dump() for c in audio.candidates],
    }


@task(name="write-reports", cache_policy=NONE)
def write_reports(
    output: OutputDir,
    stem: str,
    chunks: list[Chunk],
    placements: list[Placement],
    outcomes: list[ChunkOutcome],
    check: AudioCheck,
    header: dict[str, Any],
) -> None:
    """Stage metadata.json, segments.json and the SRT beside the chapter audio."""
    records = [chunk_record(c, p, o) for c, p, o in zip(chunks, placements, outcomes, strict=True)]
    generated = [r for r in records if not r["cache_hit"]]
    metadata = {
        **header,
        "audio": {**asdict(check), "file": f"{stem}.wav"},
        "totals": {
            "chunks": len(records),
            "cache_hits": len(records) - len(generated),
            "generated": len(generated),
            "flagged": [r["index"] for r in records if not r["passed"]],
            "retries": sum(r["retries"] for r in generated),
            "min_score": min(r["best_score"] for r in records),
            "mean_score": round(sum(r["best_score"] for r in records) / len(records), 2),
        },
        "chunks": records,
    }
    output.write_text(
        "segments.json",
        json.dumps(segments(chunks, placements, outcomes), indent=2, ensure_ascii=False),
    )
    output.write_text(
        f"{stem}.srt",
        format_srt(
            subtitle_cues(
                [(c.display, p.start, p.end) for c, p in zip(chunks, placements, strict=True)]
            )
        ),
    )
    output.write_text("metadata.json", json.dumps(metadata, indent=2, ensure_ascii=False))
