"""Phase 2.4: chunk audio joined into one chapter.

Each chunk, one at a time:
    trim        leading and trailing silence cut, keeping a breath (keep_ms)
    tighten     silences inside it longer than max_inner_pause shortened to that
    level       brought to the target loudness on its own (so every chunk sounds as loud
                as the next), then held under the true-peak ceiling by the limiter
    fade        a few milliseconds at each edge, so joins never click
then the pause for its break (clause, sentence, paragraph, section) follows it. The chapter
is streamed to a 24 kHz mono 16-bit WAV, so its length does not bound memory. Each chunk's
`Placement` records where it landed and how its time was edited, so word timings from the
worker can be placed on the chapter's clock.
"""

import itertools
import math
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from prefect import task
from prefect.cache_policies import NONE
from prefect.results import ResultStore
from pydantic import BaseModel, ConfigDict, Field

from gpu_worker.errors import PermanentError
from gpu_worker.qc import FRAME_S, sounding_frames
from gpu_worker.wav import decode_wav, resample
from tasks.cache import (
    CACHE_READERS,
    ChunkAudio,
    ChunkJob,
    DamagedEntry,
    chunk_store,
    read_chunk,
)
from tasks.loudness import LoudnessOptions, integrated_loudness, limit
from tasks.text import Break

OUTPUT_RATE = 24000


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
    turn_pause: float = Field(
        0.5, ge=0, le=10, description="Where a dialogue passes from one speaker to another."
    )
    paragraph_pause: float = Field(0.8, ge=0, le=10, description="Between paragraphs.")
    section_pause: float = Field(
        1.6, ge=0, le=20, description="Before a heading or after a scene break."
    )
    lead_in: float = Field(0.5, ge=0, le=10, description="Silence before the first word.")
    tail: float = Field(1.0, ge=0, le=10, description="Silence after the last word.")
    max_inner_pause: float = Field(
        0.6,
        ge=0.1,
        le=5,
        description="Silences inside a chunk "
        "(between its sentences) longer than this are shortened "
        "to it.",
    )
    fade_ms: float = Field(8.0, ge=0, le=200, description="Fade in and out at every chunk edge.")
    trim_db: float = Field(
        40.0,
        gt=0,
        le=90,
        description="Edge frames quieter than this many "
        "dB below the chunk's loudest frame are trimmed.",
    )
    speed: float = Field(
        1.0,
        ge=0.5,
        le=2.0,
        description="Pace of the speech: 1.2 is a fifth faster, 0.9 a tenth slower, the "
        "pitch kept (each chunk time-stretched as it is joined; pauses keep their length "
        "and the cache is not touched).",
    )
    keep_ms: float = Field(
        40.0,
        ge=0,
        le=500,
        description="Silence kept before the first and after the last loud frame.",
    )

    def pause(self, kind: Break | float) -> float:
        """The silence after a chunk: its break's, or the seconds a pause mark asked for."""
        if not isinstance(kind, str):
            return float(kind)
        return {
            "clause": self.clause_pause,
            "sentence": self.sentence_pause,
            "turn": self.turn_pause,
            "paragraph": self.paragraph_pause,
            "section": self.section_pause,
            "end": self.tail,
            "pause": self.section_pause,  # a mark's seconds come as a number
        }[kind]


@dataclass(frozen=True)
class Placement:
    """Where a chunk's speech sits in the chapter (seconds), and how its time was edited:
    `lead` seconds trimmed from its start, played `speed` times as fast, and `cuts`,
    (where on the chunk's own clock, how much) shortened inside it."""

    start: float
    end: float
    lead: float = 0.0
    cuts: tuple[tuple[float, float], ...] = ()  # (where on the chunk's clock, chapter seconds)
    gain_db: float = 0.0
    speed: float = 1.0  # its speech played this much faster (time-stretched, pitch kept)

    def chapter_time(self, chunk_time: float) -> float:
        """A time in the chunk's audio as returned by the worker -> the chapter's clock."""
        removed = sum(length for at, length in self.cuts if at < chunk_time)
        t = self.start + (chunk_time - self.lead) / self.speed - removed
        return round(min(max(t, self.start), self.end), 3)


def trim(audio: np.ndarray, rate: int, options: AudioOptions) -> tuple[np.ndarray, float]:
    """Cut leading and trailing frames quieter than `trim_db` below the loudest frame;
    returns the audio and the seconds cut from its start."""
    frame = max(1, int(rate * 0.01))
    count = audio.size // frame
    if count == 0:
        return audio, 0.0
    frames = audio[: count * frame].reshape(count, frame).astype(np.float64)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    loud = np.flatnonzero(level >= level.max() - options.trim_db)
    keep = int(rate * options.keep_ms / 1000)
    start = max(0, loud[0] * frame - keep)
    end = min(audio.size, (loud[-1] + 1) * frame + keep)
    return audio[start:end], float(start / rate)


def tighten(
    audio: np.ndarray, rate: int, longest: float
) -> tuple[np.ndarray, tuple[tuple[float, float], ...]]:
    """Shorten every silence inside `audio` longer than `longest` seconds to `longest`,
    cutting from its middle; returns the audio and the cuts (where, seconds removed)."""
    sounding = np.flatnonzero(sounding_frames(audio, rate))
    frame = int(rate * FRAME_S)
    keep, pieces, cuts, cursor = int(longest * rate), [], [], 0
    for before, after in itertools.pairwise(sounding.tolist()):
        gap_start, gap_end = (before + 1) * frame, after * frame
        if gap_end - gap_start > keep:
            cut_start = gap_start + keep // 2
            cut_end = gap_end - (keep - keep // 2)
            pieces.append(audio[cursor:cut_start])
            cuts.append((round(cut_start / rate, 3), round((cut_end - cut_start) / rate, 3)))
            cursor = cut_end
    if not cuts:
        return audio, ()
    pieces.append(audio[cursor:])
    return np.concatenate(pieces), tuple(cuts)


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


class _Leveller:
    """Each chunk to the target loudness, under the ceiling. A chunk too short to measure
    (under 400 ms of sound) gets the gain of the chunk before it."""

    def __init__(self, loudness: LoudnessOptions, rate: int) -> None:
        self.target = loudness.target
        self.rate = rate
        self.last_gain_db = 0.0

    def __call__(self, audio: np.ndarray) -> tuple[np.ndarray, float]:
        if self.target is None:
            return audio, 0.0
        lufs, ceiling = self.target
        measured = integrated_loudness(audio, self.rate)
        if math.isfinite(measured):
            self.last_gain_db = lufs - measured
        levelled = audio * np.float32(10 ** (self.last_gain_db / 20))
        return limit(levelled, self.rate, ceiling), round(self.last_gain_db, 2)


def stretch(audio: np.ndarray, rate: int, speed: float) -> np.ndarray:
    """`audio` played `speed` times as fast with its pitch kept (Rubber Band, through
    pedalboard): 1.2 is a fifth faster."""
    if speed == 1.0 or audio.size == 0:
        return audio
    import pedalboard

    stretched = pedalboard.time_stretch(audio[None, :].astype(np.float32), rate, speed)
    return np.asarray(stretched[0], dtype=np.float32)


class Joiner:
    """The join, one chunk at a time: each chunk's speech (trimmed, stretched, tightened,
    levelled, faded) and the silence after it, as float samples at `rate`, with where it
    lands. The chapter's WAV (`concatenate`) and the speech API's stream
    (flows/speech/stream.py) are both written from it."""

    def __init__(
        self,
        options: AudioOptions,
        loudness: LoudnessOptions | None = None,
        rate: int = OUTPUT_RATE,
    ) -> None:
        self.options, self.rate = options, rate
        self.level = _Leveller(loudness or LoudnessOptions(preset="off"), rate)
        self.written = 0  # samples so far

    def silence(self, seconds: float) -> np.ndarray:
        n = round(seconds * self.rate)
        self.written += n
        return np.zeros(n, dtype=np.float32)

    def lead_in(self) -> np.ndarray:
        return self.silence(self.options.lead_in)

    def chunk(
        self, samples: np.ndarray, chunk_rate: int, kind: Break | float, speed: float
    ) -> tuple[np.ndarray, np.ndarray, Placement]:
        """The chunk's speech, the pause after it, and its placement."""
        rate, options = self.rate, self.options
        speech, lead = trim(resample(samples, chunk_rate, rate), rate, options)
        speech = stretch(speech, rate, speed)
        speech, cuts = tighten(speech, rate, options.max_inner_pause)
        speech, gain = self.level(speech)
        speech = np.clip(fade(speech, rate, options.fade_ms), -1.0, 1.0)
        placement = Placement(
            round(self.written / rate, 3),
            round((self.written + speech.size) / rate, 3),
            lead,
            tuple((lead + at * speed, length) for at, length in cuts),
            gain,
            speed,
        )
        self.written += speech.size
        return speech, self.silence(options.pause(kind)), placement


def concatenate(
    chunks: Iterable[tuple[np.ndarray, int, Break | float]],
    options: AudioOptions,
    path: Path,
    loudness: LoudnessOptions | None = None,
    rate: int = OUTPUT_RATE,
    speeds: Sequence[float] | None = None,
) -> list[Placement]:
    """Write the chapter to `path`, chunk by chunk; returns each chunk's placement.

    `chunks` yields (samples, sample rate, break after) in reading order; each chunk is
    played at its speed in `speeds` (default: `options.speed`). Nothing but the current
    chunk is held in memory.
    """
    placements = []
    join = Joiner(options, loudness, rate)
    with sf.SoundFile(
        path, "w", samplerate=rate, channels=1, subtype="PCM_16", format="WAV"
    ) as out:
        out.write(join.lead_in())
        for index, (samples, chunk_rate, kind) in enumerate(chunks):
            speed = speeds[index] if speeds else options.speed
            speech, pause, placement = join.chunk(samples, chunk_rate, kind, speed)
            out.write(speech)
            out.write(pause)
            placements.append(placement)
    return placements


def read_job_audio(store: ResultStore, job: ChunkJob, storage: Path | str) -> ChunkAudio:
    """A chunk's audio, read back from the cache it was generated into; a damaged or
    missing entry is a PermanentError saying how to mend it."""
    try:
        audio = read_chunk(store, job.cache_key, storage)
    except DamagedEntry as e:
        raise PermanentError(
            f"chunk {job.index}'s cache entry {job.cache_key[:12]}... at {storage} {e}: "
            "rerun the chapter to generate it again"
        ) from e
    if audio is None:
        raise PermanentError(
            f"chunk {job.index} is no longer in the chunk cache at {storage} (key "
            f"{job.cache_key[:12]}...): rerun the chapter to generate it again"
        )
    return audio


def cached_audio(
    jobs: list[ChunkJob], storage: Path | str, kept: dict[int, ChunkAudio] | None = None
) -> Iterator[ChunkAudio]:
    """Each job's chunk read from the cache, in order, at most CACHE_READERS ahead of the
    one being joined (an S3 cache answers in tens of milliseconds each); a chunk in `kept`
    (audio the cache could not store) is taken from there."""
    store = chunk_store(storage)
    kept = kept or {}

    def read(job: ChunkJob) -> ChunkAudio:
        return kept[job.index] if job.index in kept else read_job_audio(store, job, storage)

    with ThreadPoolExecutor(CACHE_READERS) as pool:
        ahead: deque[Future[ChunkAudio]] = deque()
        for job in jobs:
            ahead.append(pool.submit(read, job))
            if len(ahead) > CACHE_READERS:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()


@task(name="concatenate", cache_policy=NONE)
def concatenate_chapter(
    jobs: list[ChunkJob],
    storage: Path | str,
    breaks: list[Break | float],
    options: AudioOptions,
    path: Path,
    loudness: LoudnessOptions,
    kept: dict[int, ChunkAudio] | None = None,
    speeds: list[float] | None = None,
) -> list[Placement]:
    """Join every chunk's audio, read from the chunk cache in `storage` as it is joined (or
    from `kept`, for chunks the cache could not store), into the chapter WAV at `path`."""
    audio = cached_audio(jobs, storage, kept)
    decoded = ((*decode_wav(a.wav), kind) for a, kind in zip(audio, breaks, strict=True))
    return concatenate(decoded, options, path, loudness, speeds=speeds)
