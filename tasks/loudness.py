"""Loudness: ITU-R BS.1770-4 integrated loudness, true peak, a true-peak limiter, and the
ACX checks audiobook platforms apply.

    integrated_loudness(audio, rate)   LUFS, gated as BS.1770-4 says
    LoudnessMeter                      the same, fed block by block (a 3-hour chapter)
    true_peak_db(audio, rate)          dBTP, from 4x oversampling
    limit(audio, rate, ceiling_db)     holds the true peak under a ceiling, gently

Narrated speech has a high peak-to-loudness ratio (the embedded voice: 14-23 dB), so
bringing it to -18 LUFS without a limiter would clip; the limiter dips the gain for a few
milliseconds around each peak and leaves everything else untouched.
"""

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import soxr
from pydantic import BaseModel, ConfigDict, Field
from scipy.ndimage import maximum_filter1d, uniform_filter1d
from scipy.signal import sosfilt

BLOCK_S = 0.1  # sub-blocks; a gating block is four of them (400 ms, 75 % overlap)
ABSOLUTE_GATE = -70.0
RELATIVE_GATE = -10.0
PRESETS = {"audiobook": (-18.0, -3.0), "podcast": (-16.0, -1.0)}  # LUFS, dBTP


class LoudnessOptions(BaseModel):
    """The chapter's loudness. `preset` sets both numbers; either can be overridden."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    preset: Literal["audiobook", "podcast", "off"] = Field(
        "audiobook",
        description="audiobook: -18 LUFS, true peak under -3 dBTP (ACX); "
        "podcast: -16 LUFS, -1 dBTP; off: levels as generated.",
    )
    target_lufs: float | None = Field(
        None, ge=-40, le=-5, description="Overrides the preset's integrated loudness."
    )
    true_peak_db: float | None = Field(
        None, ge=-12, le=0, description="Overrides the preset's true-peak ceiling."
    )

    @property
    def target(self) -> tuple[float, float] | None:
        """(LUFS, dBTP), or None when loudness is left alone."""
        if self.preset == "off":
            return None
        lufs, peak = PRESETS[self.preset]
        return (
            self.target_lufs if self.target_lufs is not None else lufs,
            self.true_peak_db if self.true_peak_db is not None else peak,
        )


def k_weighting(rate: int) -> np.ndarray:
    """BS.1770's K-weighting (a high shelf, then a high pass) as second-order sections, for
    any sample rate: the analogue prototypes whose bilinear transform at 48 kHz gives the
    standard's published coefficients."""
    k = math.tan(math.pi * 1681.974450955533 / rate)
    q, vh = 0.7071752369554196, 10 ** (3.999843853973347 / 20)
    vb = vh**0.4996667741545416
    a0 = 1 + k / q + k * k
    shelf = [
        (vh + vb * k / q + k * k) / a0,
        2 * (k * k - vh) / a0,
        (vh - vb * k / q + k * k) / a0,
        1.0,
        2 * (k * k - 1) / a0,
        (1 - k / q + k * k) / a0,
    ]
    k = math.tan(math.pi * 38.13547087602444 / rate)
    q = 0.5003270373238773
    a0 = 1 + k / q + k * k
    high_pass = [1.0, -2.0, 1.0, 1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0]
    return np.array([shelf, high_pass], dtype=np.float64)


class LoudnessMeter:
    """Integrated loudness of audio fed in pieces, in order."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._sections = k_weighting(rate)
        self._state = np.zeros((2, 2))
        self._block = round(BLOCK_S * rate)
        self._pending = np.zeros(0)
        self._energies: list[float] = []

    def add(self, audio: np.ndarray) -> None:
        weighted, self._state = sosfilt(self._sections, audio.astype(np.float64), zi=self._state)
        data = np.concatenate([self._pending, weighted])
        whole = data.size // self._block * self._block
        blocks = data[:whole].reshape(-1, self._block)
        self._energies.extend(np.mean(blocks**2, axis=1).tolist())
        self._pending = data[whole:]

    def integrated(self) -> float:
        """Gated integrated loudness in LUFS (-inf for silence or under 400 ms)."""
        sub = np.asarray(self._energies)
        if sub.size < 4:
            return -math.inf
        blocks = np.convolve(sub, np.ones(4) / 4, mode="valid")
        loud = blocks[blocks > 10 ** ((ABSOLUTE_GATE + 0.691) / 10)]
        if loud.size == 0:
            return -math.inf
        gate = -0.691 + 10 * math.log10(loud.mean()) + RELATIVE_GATE
        kept = loud[loud > 10 ** ((gate + 0.691) / 10)]
        return -0.691 + 10 * math.log10(kept.mean())


def integrated_loudness(audio: np.ndarray, rate: int) -> float:
    meter = LoudnessMeter(rate)
    meter.add(audio)
    return meter.integrated()


def _oversampled(audio: np.ndarray, rate: int) -> np.ndarray:
    """|audio| at 4x the rate (as BS.1770's true-peak meter), exactly 4 values a sample."""
    over = soxr.resample(audio.astype(np.float64), rate, 4 * rate)
    if over.size < 4 * audio.size:
        over = np.pad(over, (0, 4 * audio.size - over.size))
    over = over[: 4 * audio.size]
    return np.abs(over, out=over)  # in place: a second array this size costs page faults


def _oversampled_peaks(audio: np.ndarray, rate: int) -> np.ndarray:
    """Per sample, the largest magnitude the waveform reaches in the interval it starts."""
    quads = _oversampled(audio, rate).reshape(-1, 4)
    # three pairwise maxima: numpy's max(axis=1) over rows of 4 is ~4x slower
    peaks = np.maximum(quads[:, 0], quads[:, 1])
    np.maximum(peaks, quads[:, 2], out=peaks)
    np.maximum(peaks, quads[:, 3], out=peaks)
    return np.maximum(peaks, np.abs(audio), out=peaks)


def true_peak_db(audio: np.ndarray, rate: int) -> float:
    if audio.size == 0:
        return -math.inf
    peak = max(float(_oversampled(audio, rate).max()), float(np.abs(audio).max()))
    return 20 * math.log10(peak) if peak > 0 else -math.inf


def limit(audio: np.ndarray, rate: int, ceiling_db: float, window_s: float = 0.008) -> np.ndarray:
    """Hold the true peak under `ceiling_db`. The gain reduction each peak needs is held
    for `window_s` either side and smoothed over the same span, so the gain never exceeds
    what any sample needs and changes over ~8 ms ramps, not in steps."""
    if audio.size == 0:
        return audio
    ceiling = 10 ** (ceiling_db / 20) * 0.98  # 0.17 dB of margin for what 4x misses
    needed = np.minimum(1.0, ceiling / np.maximum(_oversampled_peaks(audio, rate), 1e-12))
    if needed.min() >= 1.0:
        return audio
    width = max(1, int(window_s * rate))
    held = maximum_filter1d(1.0 - needed, size=2 * width + 1)
    smoothed = uniform_filter1d(held, size=width + 1)
    return (audio * (1.0 - smoothed)).astype(np.float32)


@dataclass(frozen=True)
class AcxCheck:
    """The figures ACX (Audible's producer platform) checks, and whether each passes."""

    rms_dbfs: float  # whole file; ACX: between -23 and -18 dB
    peak_dbfs: float  # ACX: -3 dB or lower
    noise_floor_dbfs: float  # quietest half second; ACX: -60 dB or lower
    rms_ok: bool
    peak_ok: bool
    noise_floor_ok: bool


def dbfs(value: float) -> float:
    """dBFS, floored at -120 (digital silence: below anything 16-bit audio can hold)."""
    return 20 * math.log10(max(value, 1e-6))


def acx_check(rms_db: float, peak_db: float, noise_floor_db: float) -> AcxCheck:
    return AcxCheck(
        round(rms_db, 2),
        round(peak_db, 2),
        round(noise_floor_db, 2),
        -23.0 <= rms_db <= -18.0,
        peak_db <= -3.0,
        noise_floor_db <= -60.0,
    )
