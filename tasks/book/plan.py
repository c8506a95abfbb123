"""What narrating a book will take, before anything is spent: per chapter, its words,
the minutes of audio they make, and the GPU seconds and cost on the RunPod fleet.

Minutes come from `NARRATION_WPM`, a narrated audiobook's pace (ACX's guidance: 150-160
words per minute). GPU seconds per second of audio come from docs/PERFORMANCE.md's
Chatterbox measurement on an H100 (the narrator loop, candidates batched): 0.70 s for 1
candidate, 0.37 x 3 = 1.11 s for 3, 0.17 x 10 = 1.74 s for 10, interpolated between.
Whisper's pass over the candidates is not measured on the GPU yet and not included.
"""

from dataclasses import dataclass

import numpy as np

from tasks.book.model import BookChapter

NARRATION_WPM = 155.0
_CANDIDATES = (1.0, 3.0, 10.0)
_GPU_PER_AUDIO_SECOND = (0.70, 1.11, 1.74)


@dataclass(frozen=True)
class Estimate:
    words: int
    minutes: float
    gpu_seconds: float
    cost: float


def gpu_seconds_per_audio_second(candidates: int) -> float:
    return float(np.interp(candidates, _CANDIDATES, _GPU_PER_AUDIO_SECOND))


def estimate(chapters: list[BookChapter], candidates: int, price_per_hour: float) -> Estimate:
    """The audio, GPU time and cost `chapters` would take with `candidates` per chunk."""
    words = sum(c.words for c in chapters)
    minutes = words / NARRATION_WPM
    gpu = minutes * 60 * gpu_seconds_per_audio_second(candidates)
    return Estimate(words, minutes, gpu, gpu / 3600 * price_per_hour)
