"""Quality gates for a candidate, cheapest first, each failure a reason code; and the one
repair made to the chosen candidate.

Signal gates (samples only, before Whisper):
    empty, silent          nothing, or RMS under SILENCE_DBFS
    clipped                more than MAX_CLIPPED_FRACTION of samples at full scale
    long_silence           a silence inside the speech longer than LONG_SILENCE_S
    implausible_duration   a pace outside WORDS_PER_SECOND for the text's word count
Transcript gates (after Whisper, with its word times and the alignment to the text):
    no_speech              Whisper hears no speech
    repetition             a phrase of the text heard twice, or a compression ratio over
                           MAX_COMPRESSION_RATIO (looping generation)
    truncated_start/_end   TRUNCATION_WORDS or more words of the text missing at an end
    noisy_tail             more than MAX_TAIL_S of sound after the last word (runaway
                           generation, hiss)
Repair (`trim_tail`): a shorter tail after the last word is cut away.

Silence is measured per 10 ms frame, relative to the candidate's loudest frame, so a quiet
voice and a loud one are judged alike. Pure numpy.
"""

import numpy as np

from gpu_worker.scoring import Alignment
from gpu_worker.validator import Transcript

SILENCE_DBFS = -50.0  # a whole candidate quieter than this is silence
SILENT_BELOW_PEAK_DB = 40.0  # a frame this far under the loudest frame is silent
CLIP_LEVEL = 0.999
MAX_CLIPPED_FRACTION = 0.001
LONG_SILENCE_S = 2.0
WORDS_PER_SECOND = (0.7, 6.0)
NO_SPEECH_PROBABILITY = 0.6
MAX_COMPRESSION_RATIO = 2.4
REPEATED_WORDS = 2
TRUNCATION_WORDS = 2
TAIL_MARGIN_S = 0.35  # kept after the last word's end: its natural decay
MAX_TAIL_S = 1.0
FRAME_S = 0.01


def rms_dbfs(audio: np.ndarray) -> float:
    if audio.size == 0:
        return -np.inf
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return 20.0 * np.log10(rms) if rms > 0 else -np.inf


def sounding_frames(audio: np.ndarray, rate: int) -> np.ndarray:
    """One boolean per 10 ms frame: is there sound (not silence) in it?"""
    size = max(1, int(rate * FRAME_S))
    count = audio.size // size
    if count == 0:
        return np.zeros(0, dtype=bool)
    frames = audio[: count * size].reshape(count, size).astype(np.float64)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    return level > max(level.max() - SILENT_BELOW_PEAK_DB, SILENCE_DBFS - 10)


def longest_inner_silence(audio: np.ndarray, rate: int) -> float:
    """The longest silence between the first and the last sound, in seconds."""
    sounding = np.flatnonzero(sounding_frames(audio, rate))
    if sounding.size < 2:
        return 0.0
    return float(np.max(np.diff(sounding)) - 1) * FRAME_S


def signal_gates(audio: np.ndarray, rate: int, word_count: int) -> list[str]:
    """Reason codes for what is wrong with `audio` as a reading of `word_count` words."""
    if audio.size == 0:
        return ["empty"]
    if rms_dbfs(audio) < SILENCE_DBFS:
        return ["silent"]
    reasons = []
    if np.mean(np.abs(audio) >= CLIP_LEVEL) > MAX_CLIPPED_FRACTION:
        reasons.append("clipped")
    if longest_inner_silence(audio, rate) > LONG_SILENCE_S:
        reasons.append("long_silence")
    slowest, fastest = WORDS_PER_SECOND
    if word_count >= 3 and not slowest <= word_count / (audio.size / rate) <= fastest:
        reasons.append("implausible_duration")
    return reasons


def tail_after_speech(audio: np.ndarray, rate: int, last_word_end: float) -> float:
    """Seconds of sound after the last word's end (and its decay margin)."""
    start = int((last_word_end + TAIL_MARGIN_S) * rate)
    if start >= audio.size:
        return 0.0
    sounding = sounding_frames(audio, rate)
    first_frame = int(start / (rate * FRAME_S))
    return float(np.count_nonzero(sounding[first_frame:])) * FRAME_S


def transcript_gates(
    heard: Transcript,
    alignment: Alignment,
    reference: list[str],
    hypothesis: list[str],
    audio: np.ndarray,
    rate: int,
) -> list[str]:
    """Reason codes from what Whisper heard, compared with the text."""
    if not hypothesis or (
        heard.no_speech_prob > NO_SPEECH_PROBABILITY and heard.avg_logprob < -1.0
    ):
        return ["no_speech"]
    reasons = []
    if (
        heard.compression_ratio > MAX_COMPRESSION_RATIO
        or alignment.repeated_words(reference, hypothesis) >= REPEATED_WORDS
    ):
        reasons.append("repetition")
    if len(reference) > TRUNCATION_WORDS:
        if alignment.deleted_at_start() >= TRUNCATION_WORDS:
            reasons.append("truncated_start")
        if alignment.deleted_at_end() >= TRUNCATION_WORDS:
            reasons.append("truncated_end")
    if heard.words and tail_after_speech(audio, rate, heard.words[-1].end) > MAX_TAIL_S:
        reasons.append("noisy_tail")
    return reasons


def trim_tail(
    audio: np.ndarray, rate: int, last_word_end: float, fade_s: float = 0.05
) -> np.ndarray:
    """Cut any sound after the last word's end (plus its decay margin), fading out."""
    if tail_after_speech(audio, rate, last_word_end) == 0.0:
        return audio
    end = min(audio.size, int((last_word_end + TAIL_MARGIN_S) * rate))
    kept = audio[:end].astype(np.float32, copy=True)
    fade = min(kept.size, int(fade_s * rate))
    if fade:
        kept[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return kept
