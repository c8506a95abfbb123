"""Phase 3: the chapter described in metadata.json, segments.json and SRT/VTT subtitles.

Staged in the run's OutputDir (the flow publishes them with the audio); and the
fingerprint a batch compares to know whether a chapter's outputs are current.
"""

import hashlib
import json
import platform
from dataclasses import asdict
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from gpu_worker.redaction import redact, redacted
from gpu_worker.schema import GenerateRequest
from tasks import subtitles
from tasks.audio import Placement
from tasks.backends import Backend
from tasks.cast import Cast
from tasks.chunk_generation import ChunkOutcome
from tasks.options import NarrationOptions
from tasks.outputs import OutputDir
from tasks.text import Chunk, PreparedText
from tasks.validation import ChapterValidation
from tasks.verify import AudioCheck


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
    return redact(clip) if clip else request.voice


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
        "pause_seconds": chunk.pause_seconds,
        "heading": chunk.heading,
        "start": placement.start,
        "end": placement.end,
        "gain_db": placement.gain_db,
        "cache_hit": outcome.cached,
        "cache_key": outcome.job.cache_key,
        "take": outcome.job.take,
        "wav_sha256": audio.wav_sha256,
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
        # what a backend billed by the character (ElevenLabs) charged: every take made
        "characters_sent": 0 if outcome.cached else len(chunk.text) * len(audio.candidates),
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


def fingerprint(
    text_sha256: str,
    options: NarrationOptions,
    identity: str,
    voice: str | None,
    cast: Cast | None = None,
    lexicon: dict[str, str] | None = None,
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
    if lexicon:
        payload["lexicon"] = lexicon
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def header(
    prepared: PreparedText,
    outcomes: list[ChunkOutcome],
    backend: Backend,
    options: NarrationOptions,
    voice: str | None,
    cast: Cast | None,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """metadata.json's description of the run: its fingerprint, source, voice, backend,
    options, settings and versions."""
    text_sha256 = hashlib.sha256(prepared.text.encode()).hexdigest()
    voices = dict.fromkeys(o.job.request.voice for o in outcomes)  # in order of first use
    identity = " ; ".join(backend.identity(v) for v in voices)
    return {
        "fingerprint": fingerprint(text_sha256, options, identity, voice, cast, prepared.lexicon),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": {
            "path": prepared.source,
            "characters": len(prepared.text),
            "words": prepared.word_count,
            "sha256": text_sha256,
        },
        # a presigned URL's query string is a credential: never written out
        "voice": redact(voice) if voice else None,
        "cast": redacted(cast.model_dump(mode="json")) if cast else None,
        "lexicon": prepared.lexicon,
        "backend": {
            "name": backend.name,
            "identity": identity,
        },
        "options": options.model_dump(mode="json"),
        "settings": settings,
        "versions": {
            "narrator": version("narrator"),
            "python": platform.python_version(),
            "prefect": version("prefect"),
        },
    }
