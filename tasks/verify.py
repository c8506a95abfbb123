"""Phase 3: the chapter audio checked before anything is published.

`check_audio` reads the file once, block by block: it must decode, not be silent, have a
pace a narrator could have, and it is measured as delivery platforms measure it
(integrated loudness, true peak, ACX's RMS, peak and noise floor).
"""

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from prefect import task
from prefect.cache_policies import NONE

from gpu_worker.errors import PermanentError
from tasks.loudness import AcxCheck, LoudnessMeter, acx_check, dbfs, true_peak_db

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


def check_audio(
    path: Path, word_count: int, target: tuple[float, float] | None = None, speed: float = 1.0
) -> AudioCheck:
    """Decode the whole file (block by block), measure it, and judge its level and pace
    (the plausible pace scaled by the speed it was asked to be read at)."""
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
    rms_db = dbfs(math.sqrt(squares / total)) if total else -120.0
    wpm = word_count / (duration / 60) if duration > 0 else 0.0
    lufs = max(meter.integrated(), -120.0)
    problems = []
    if rms_db < SILENT_DBFS:
        problems.append(f"silent: RMS {rms_db:.1f} dBFS is below {SILENT_DBFS} dBFS")
    slowest, fastest = (pace * speed for pace in WORDS_PER_MINUTE)
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
        acx_check(rms_db, dbfs(peak), dbfs(quietest if math.isfinite(quietest) else 0.0)),
        problems,
    )


@task(name="verify-audio", cache_policy=NONE)
def verify_audio(
    path: Path, word_count: int, target: tuple[float, float] | None, speed: float = 1.0
) -> AudioCheck:
    """The chapter decodes, is not silent, and lasts about as long as its words need."""
    check = check_audio(path, word_count, target, speed)
    if check.problems:
        raise PermanentError(f"the chapter audio failed its checks: {'; '.join(check.problems)}")
    return check
