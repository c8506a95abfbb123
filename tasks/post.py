"""Phase 3: check the chapter audio and describe it: metadata, segments, subtitles.

`check_audio` reads the file once, block by block: it must decode, not be silent, have a
pace a narrator could have, and it is measured as delivery platforms measure it
(integrated loudness, true peak, ACX's RMS, peak and noise floor). `write_reports` stages
metadata.json, segments.json and the SRT and VTT subtitles in the run's OutputDir, which
the flow publishes once everything is written.
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
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from gpu_worker.errors import PermanentError
from gpu_worker.schema import GenerateRequest
from tasks import subtitles
from tasks.audio import Placement
from tasks.generate import ChunkOutcome
from tasks.loudness import AcxCheck, LoudnessMeter, acx_check, true_peak_db
from tasks.storage import OutputDir
from tasks.text import Chunk
from tasks.validation import ChapterValidation

SILENT_DBFS = -45.0
WORDS_PER_MINUTE = (60.0, 300.0)  # a narration outside this pace has lost or gained audio
NOISE_WINDOW_S = 0.5
LOUDNESS_TOLERANCE = 1.0  # LU either side of the target


@dataclass(frozen=True)
class AudioCheck:
    duration_seconds: float
    sample_rate: int
    words_per_minute: float
    integrated_lufs: float
    true_peak_dbtp: float
    target_lufs: float | None
    ceiling_dbtp: float | None
    loudness_ok: bool
    acx: AcxCheck
    problems: list[str]


def _db(value: float) -> float:
    """dBFS, floored at -120 (digital silence: below anything 16-bit audio can hold)."""
    return 20 * math.log10(max(value, 1e-6))


def check_audio(
    path: Path, word_count: int, target: tuple[float, float] | None = None
) -> AudioCheck:
    """Decode the whole file (block by block), measure it, and judge its level and pace."""
    try:
        info = sf.info(str(path))
        rate = info.samplerate
        meter, window = LoudnessMeter(rate), int(NOISE_WINDOW_S * rate)
        total, squares, peak, tp, quietest = 0, 0.0, 0.0, -math.inf, math.inf
        for block in sf.blocks(str(path), blocksize=window * 20, dtype="float32", always_2d=True):
            mono = block.mean(axis=1)
            meter.add(mono)
            total += mono.size
            squares += float(np.sum(np.square(mono, dtype=np.float64)))
            peak = max(peak, float(np.max(np.abs(mono), initial=0.0)))
            tp = max(tp, true_peak_db(mono, rate))
            whole = mono[: mono.size // window * window].reshape(-1, window)
            if whole.size:
                quietest = min(quietest, float(np.sqrt(np.mean(whole**2, axis=1)).min()))
    except (sf.LibsndfileError, RuntimeError) as e:
        raise PermanentError(f"{path}: the chapter audio does not decode: {e}") from e
    duration = total / rate
    rms_db = _db(math.sqrt(squares / total)) if total else -120.0
    wpm = word_count / (duration / 60) if duration > 0 else 0.0
    lufs = max(meter.integrated(), -120.0)
    problems = []
    if rms_db < SILENT_DBFS:
        problems.append(f"silent: RMS {rms_db:.1f} dBFS is below {SILENT_DBFS} dBFS")
    slowest, fastest = WORDS_PER_MINUTE
    if not slowest <= wpm <= fastest:
        problems.append(
            f"implausible duration: {duration:.1f} s for {word_count} words is "
            f"{wpm:.0f} words per minute (expected {slowest:.0f}-{fastest:.0f})"
        )
    loudness_ok = target is None or (
        abs(lufs - target[0]) <= LOUDNESS_TOLERANCE and tp <= target[1]
    )
    return AudioCheck(
        round(duration, 3),
        rate,
        round(wpm, 1),
        round(lufs, 2),
        round(max(tp, -120.0), 2),
        target[0] if target else None,
        target[1] if target else None,
        loudness_ok,
        acx_check(rms_db, _db(peak), _db(quietest if math.isfinite(quietest) else 0.0)),
        problems,
    )


@task(name="verify-audio", cache_policy=NONE)
def verify_audio(path: Path, word_count: int, target: tuple[float, float] | None) -> AudioCheck:
    """The chapter decodes, is not silent, and lasts about as long as its words need."""
    check = check_audio(path, word_count, target)
    if check.problems:
        raise PermanentError(f"the chapter audio failed its checks: {'; '.join(check.problems)}")
    return check


def timed_words(
    chunks: list[Chunk], placements: list[Placement], outcomes: list[ChunkOutcome]
) -> list[list[subtitles.TimedWord]]:
    """Each chunk's written words on the chapter's clock."""
    return [
        subtitles.chunk_words(c.display, o.audio.words if o.audio else [], p, c.speaker)
        for c, p, o in zip(chunks, placements, outcomes, strict=True)
    ]


def segments(
    chunks: list[Chunk],
    placements: list[Placement],
    outcomes: list[ChunkOutcome],
    words: list[list[subtitles.TimedWord]],
) -> list[dict[str, Any]]:
    """One entry per chunk: where it is heard, what it says, how well it was read."""
    return [
        {
            "index": c.index,
            "start": p.start,
            "end": p.end,
            "text": c.display,
            "spoken_text": c.text,
            "speaker": c.speaker,
            "voice": voice_label(o.job.request),
            "break_after": c.break_after,
            "span": list(c.span),
            "score": o.audio.best_score if o.audio else None,
            "passed": o.audio.passed if o.audio else None,
            "words": [[w.text, w.start, w.end] for w in chunk_words],
        }
        for c, p, o, chunk_words in zip(chunks, placements, outcomes, words, strict=True)
    ]


def voice_label(request: GenerateRequest) -> str | None:
    """The voice a chunk was read in: a built-in name or a clip's location (never a
    presigned URL's query string: it is a credential)."""
    clip = request.audio_prompt_url
    return clip.split("?")[0] if clip else request.voice


def chunk_record(chunk: Chunk, placement: Placement, outcome: ChunkOutcome) -> dict[str, Any]:
    audio = outcome.audio
    assert audio is not None  # reports are only written when every chunk has audio
    return {
        "index": chunk.index,
        "text": chunk.text,
        "display": chunk.display,
        "speaker": chunk.speaker,
        "voice": voice_label(outcome.job.request),
        "span": list(chunk.span),
        "break_after": chunk.break_after,
        "heading": chunk.heading,
        "start": placement.start,
        "end": placement.end,
        "gain_db": placement.gain_db,
        "cache_hit": outcome.cached,
        "cache_key": outcome.job.cache_key,
        "best_score": audio.best_score,
        "passed": audio.passed,
        "reasons": audio.reasons,
        "transcript": audio.transcript,
        "scores": [c.score for c in audio.candidates],
        "retries": audio.retries_used,
        "candidates_skipped": audio.candidates_skipped,
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
    validation: ChapterValidation | None,
    header: dict[str, Any],
) -> list[dict[str, Any]]:
    """Stage metadata.json, segments.json and the SRT and VTT subtitles beside the audio;
    returns the per-chunk records."""
    records = [chunk_record(c, p, o) for c, p, o in zip(chunks, placements, outcomes, strict=True)]
    generated = [r for r in records if not r["cache_hit"]]
    words = timed_words(chunks, placements, outcomes)
    cues = subtitles.cues([w for chunk_words in words for w in chunk_words])
    metadata = {
        **header,
        "audio": {**asdict(check), "file": f"{stem}.wav"},
        "validation": None
        if validation is None
        else {
            "wer": validation.wer,
            "words": validation.words,
            "flagged": validation.flagged,
            "file": "validation.json",
        },
        "totals": {
            "chunks": len(records),
            "cache_hits": len(records) - len(generated),
            "generated": len(generated),
            "flagged": [r["index"] for r in records if not r["passed"]],
            "retries": sum(r["retries"] for r in generated),
            "candidates_skipped": sum(r["candidates_skipped"] for r in generated),
            "min_score": min(r["best_score"] for r in records),
            "mean_score": round(sum(r["best_score"] for r in records) / len(records), 2),
        },
        "chunks": records,
    }
    output.write_text(
        "segments.json",
        json.dumps(segments(chunks, placements, outcomes, words), indent=2, ensure_ascii=False),
    )
    output.write_text(f"{stem}.srt", subtitles.srt(cues))
    output.write_text(f"{stem}.vtt", subtitles.vtt(cues))
    output.write_text(
        "metadata.json", json.dumps(metadata, indent=2, ensure_ascii=False, default=str)
    )
    return records


def artifact_key(stem: str, kind: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-") or "chapter"
    return f"{slug}-{kind}"


def worker_seconds(records: list[dict[str, Any]]) -> float:
    """Seconds the workers spent on this run's generated chunks (synthesis and hearing)."""
    return sum(
        (c["synthesis_ms"] + c["validation_ms"]) / 1000
        for r in records
        if not r["cache_hit"]
        for c in r["candidates"]
    )


def summary(
    stem: str,
    location: str,
    records: list[dict[str, Any]],
    check: AudioCheck,
    validation: ChapterValidation | None,
    backend: str,
    price_per_hour: float,
) -> str:
    seconds = worker_seconds(records)
    low = [r["index"] for r in records if not r["passed"]]
    lines = [
        f"### {stem}",
        f"- **Audio**: {check.duration_seconds / 60:.1f} min, {check.integrated_lufs:.1f} LUFS, "
        f"true peak {check.true_peak_dbtp:.1f} dBTP ({'meets' if check.loudness_ok else 'misses'}"
        " the target)",
        f"- **Chunks**: {len(records)}, {sum(r['cache_hit'] for r in records)} from cache, "
        f"{sum(r['retries'] for r in records if not r['cache_hit'])} extra rounds on the "
        f"worker, {sum(max(0, r['attempts'] - 1) for r in records)} task retries",
        f"- **Below threshold**: {low or 'none'}",
        "- **Whole-chapter check**: "
        + (
            "skipped"
            if validation is None
            else f"WER {100 * validation.wer:.1f} %, flagged {validation.flagged or 'none'}"
        ),
        f"- **Output**: `{location}`",
        f"- **Worker time**: {seconds:.0f} s on the {backend} backend"
        + (
            f", about ${seconds / 3600 * price_per_hour:.2f} at ${price_per_hour:.2f}/GPU-hour"
            if backend == "runpod"
            else ""
        ),
    ]
    return "\n".join(lines)


@task(name="publish-artifacts", cache_policy=NONE)
def publish_artifacts(stem: str, records: list[dict[str, Any]], summary_markdown: str) -> None:
    """The chunk table and the run summary, as Prefect artifacts (the UI's Artifacts tab)."""
    create_table_artifact(
        [
            {
                "chunk": r["index"],
                "text": r["display"][:60],
                "best score": r["best_score"],
                "scores": ", ".join(f"{s:g}" for s in r["scores"]),
                "extra rounds": r["retries"],
                "task retries": max(0, r["attempts"] - 1),
                "cache hit": r["cache_hit"],
                "seconds": round(r["end"] - r["start"], 2),
            }
            for r in records
        ],
        key=artifact_key(stem, "chunks"),
        description=f"Every chunk of {stem}",
    )
    create_markdown_artifact(
        summary_markdown,
        key=artifact_key(stem, "summary"),
        description=f"Narration of {stem}",
    )
