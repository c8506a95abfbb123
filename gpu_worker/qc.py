"""Signal gates: cheap checks on a candidate's samples before anyone listens to it.

Each gate returns a reason code; a candidate with any reason does not pass, whatever its
transcript scores. Pure numpy.
"""

import numpy as np

SILENCE_DBFS = -50.0  # whole-candidate RMS below this is silence
CLIP_LEVEL = 0.999  # |sample| at or above this is clipped
MAX_CLIPPED_FRACTION = 0.001
WORDS_PER_SECOND = (0.7, 6.0)  # outside this a reading is truncated or runaway


def rms_dbfs(audio: np.ndarray) -> float:
    if audio.size == 0:
        return -np.inf
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return 20.0 * np.log10(rms) if rms > 0 else -np.inf


def signal_gates(audio: np.ndarray, sample_rate: int, word_count: int) -> list[str]:
    """Reason codes for what is wrong with `audio` as a reading of `word_count` words."""
    if audio.size == 0:
        return ["empty"]
    if rms_dbfs(audio) < SILENCE_DBFS:
        return ["silent"]
    reasons = []
    if np.mean(np.abs(audio) >= CLIP_LEVEL) > MAX_CLIPPED_FRACTION:
        reasons.append("clipped")
    seconds = audio.size / sample_rate
    slowest, fastest = WORDS_PER_SECOND
    if word_count >= 3 and not slowest <= word_count / seconds <= fastest:
        reasons.append("implausible_duration")
    return reasons
