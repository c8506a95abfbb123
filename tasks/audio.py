"""Phase 2.4: chunk audio joined into one chapter.

Each chunk's leading and trailing silence is trimmed (keeping a breath), short fades make
every edge start and end at zero so joins never click, and the pause that follows a chunk
depends on its break: clause, sentence, paragraph or section. The chapter is streamed to a
24 kHz mono 16-bit WAV one chunk at a time, so its length does not bound memory.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from prefect import task
from prefect.cache_policies import NONE
from pydantic import BaseModel, ConfigDict, Field

from gpu_worker.wav import decode_wav, resample
from tasks.generate import ChunkAudio
from tasks.text import Break

OUTPUT_RATE = 24000
_FRAME_MS = 10.0


class AudioOptions(BaseModel):
    """How chunks are joined. Times in seconds unless the name says otherwise."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    clause_pause: float = Field(
        0.2,
        ge=0,
        le=5,
        description="After a chunk that ends mid-sentence (a long sentence split at a comma).",
    )
    sentence_pause: float = Field(0.35, ge=0, le=5, description="Between sentences.")
    paragraph_pause: float = Field(0.8, ge=0, le=10, description="Between paragraphs.")
    section_pause: float = Field(
        1.6, ge=0, le=20, description="Before a heading or after a scene break."
    )
    lead_in: float = Field(0.5, ge=0, le=10, description="Silence before the first word.")
    tail: float = Field(1.0, ge=0, le=10, description="Silence after the last word.")
    fade_ms: float = Field(8.0, ge=0, le=200, description="Fade in and out at every chunk edge.")
    trim_db: float = Field(
        40.0,
        gt=0,
        le=90,
        description="Edge frames quieter than this many "
        "dB below the chunk's loudest frame are trimmed.",
    )
    keep_ms: float = Field(
        40.0,
        ge=0,
        le=500,
        description="Silence kept before the first and after the last loud frame.",
    )

    def pause(self, kind: Break) -> float:
        return {
            "clause": self.clause_pause,
            "sentence": self.sentence_pause,
            "paragraph": self.paragraph_pause,
            "section": self.section_pause,
            "end": self.tail,
        }[kind]


@dataclass(frozen=True)
class Placement:
    """Where a chunk's speech sits in the chapter, in seconds."""

    start: float
    end: float


def trim(audio: np.ndarray, rate: int, options: AudioOptions) -> np.ndarray:
    """Cut leading and trailing frames quieter than `trim_db` below the loudest frame."""
    frame = max(1, int(rate * _FRAME_MS / 1000))
    count = audio.size // frame
    if count == 0:
        return audio
    frames = audio[: count * frame].reshape(count, frame).astype(np.float64)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    loud = np.flatnonzero(level >= level.max() - options.trim_db)
    keep = int(rate * options.keep_ms / 1000)
    start = max(0, loud[0] * frame - keep)
    end = min(audio.size, (loud[-1] + 1) * frame + keep)
    return audio[start:end]


def fade(audio: np.ndarray, rate: int, fade_ms: float) -> np.ndarray:
    """Raised-cosine fade in and out, so the first and last samples are zero."""
    n = min(int(rate * fade_ms / 1000), audio.size // 2)
    if n == 0:
        return audio
    ramp = (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n, dtype=np.float64))).astype(np.float32)
    out = audio.astype(np.float32, copy=True)
    out[:n] *= ramp
    out[-n:] *= ramp[::-1]
    return out


def concatenate(
    chunks: Iterable[tuple[np.ndarray, int, Break]],
    options: AudioOptions,
    path: Path,
    rate: int = OUTPUT_RATE,
) -> list[Placement]:
    """Write the chapter to `path`, chunk by chunk; returns each chunk's placement.

    `chunks` yields (samples, sample rate, break after) in reading order. Nothing but the
    current chunk is held in memory.
    """
    placements = []
    written = 0
    with sf.SoundFile(
        path, "w", samplerate=rate, channels=1, subtype="PCM_16", format="WAV"
    ) as out:

        def silence(seconds: float) -> None:
            nonlocal written
            n = round(seconds * rate)
            out.write(np.zeros(n, dtype=np.float32))
            written += n

        silence(options.lead_in)
        for samples, chunk_rate, kind in chunks:
            speech = fade(
                trim(resample(samples, chunk_rate, rate), rate, options), rate, options.fade_ms
            )
            out.write(np.clip(speech, -1.0, 1.0))
            placements.append(
                Placement(round(written / rate, 3), round((written + speech.size) / rate, 3))
            )
            written += speech.size
            silence(options.pause(kind))
    return placements


@task(name="concatenate", cache_policy=NONE)
def concatenate_chapter(
    audio: list[ChunkAudio], breaks: list[Break], options: AudioOptions, path: Path
) -> list[Placement]:
    """Join every chunk's audio into the chapter WAV at `path`."""
    decoded = ((*decode_wav(a.wav), kind) for a, kind in zip(audio, breaks, strict=True))
    return concatenate(decoded, options, path)
