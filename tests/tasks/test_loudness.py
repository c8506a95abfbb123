"""The loudness meter against an independent one: libebur128 (through pyebur128), the
reference implementation of EBU R 128 / ITU-R BS.1770 that ffmpeg and most delivery tools
use. Signals chosen so that a wrong K-weighting (low shelf, high shelf), a wrong gate or a
wrong block overlap would each move the result by more than the tolerance."""

import numpy as np
import pyebur128
import pytest

from gpu_worker.best_of_n import BestOfN
from gpu_worker.schema import GenerateRequest
from tasks.loudness import LoudnessMeter, integrated_loudness, true_peak_db

TOLERANCE_LU = 0.1


def reference(audio: np.ndarray, rate: int) -> tuple[float, float]:
    """libebur128's integrated loudness (LUFS) and true peak (dBTP) of a mono signal."""
    mode = pyebur128.MeasurementMode.MODE_I | pyebur128.MeasurementMode.MODE_TRUE_PEAK
    state = pyebur128.R128State(1, rate, mode)
    samples = np.ascontiguousarray(audio, dtype=np.float64)
    state.add_frames(samples, samples.size)
    peak = pyebur128.get_true_peak(state, 0)
    return pyebur128.get_loudness_global(state), 20 * np.log10(peak)


def tone(freq: float, dbfs: float, seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (10 ** (dbfs / 20) * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def pink(seconds: float, rate: int, dbfs: float, seed: int = 1) -> np.ndarray:
    """Noise with a 1/f spectrum: energy in every band the K-weighting shapes."""
    white = np.random.default_rng(seed).standard_normal(int(seconds * rate))
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(white.size, 1 / rate)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0
    noise = np.fft.irfft(spectrum, white.size)
    return (noise / np.sqrt(np.mean(noise**2)) * 10 ** (dbfs / 20)).astype(np.float32)


def signals(rate: int) -> dict[str, np.ndarray]:
    return {
        # EBU Tech 3341 case 1 (1 kHz at -23 dBFS) in one channel: -26.0 LUFS
        "1 kHz sine": tone(1000, -23, 20, rate),
        "100 Hz sine (below the high-pass)": tone(100, -12, 10, rate),
        "8 kHz sine (the high shelf)": tone(8000, -20, 10, rate),
        "pink noise": pink(15, rate, -25),
        # Tech 3341 case 5's shape: loud middle, quiet ends; the relative gate decides
        "gated: -36/-20/-36 dBFS": np.concatenate(
            [tone(1000, -36, 20, rate), tone(1000, -20, 20.1, rate), tone(1000, -36, 20, rate)]
        ),
        "gated: tone and silence": np.concatenate(
            [tone(1000, -18, 5, rate), np.zeros(10 * rate, np.float32), tone(1000, -18, 5, rate)]
        ),
    }


@pytest.mark.parametrize("rate", [24000, 48000])
@pytest.mark.parametrize("name", list(signals(8000)))
def test_integrated_loudness_agrees_with_libebur128(name: str, rate: int) -> None:
    audio = signals(rate)[name]
    expected, _ = reference(audio, rate)
    assert integrated_loudness(audio, rate) == pytest.approx(expected, abs=TOLERANCE_LU)


def test_the_1khz_sine_reads_as_ebu_tech_3341_says() -> None:
    """The published value, not only another meter's: -23 LUFS for the stereo case is
    -23 - 10 log10(2) = -26.01 LUFS in one channel."""
    assert integrated_loudness(tone(1000, -23, 20, 48000), 48000) == pytest.approx(-26.01, abs=0.1)


def test_speech_agrees_with_libebur128(worker: BestOfN) -> None:
    """Narrated speech, as the chapters are made of (the embedded engine's own voice)."""
    text = "The keeper climbed the stairs, lit the lamp, and watched the ships go by."
    audio = worker.engine.synthesize(GenerateRequest(text=text), seed=3)
    rate = worker.engine.sample_rate
    expected_lufs, expected_peak = reference(audio, rate)
    assert integrated_loudness(audio, rate) == pytest.approx(expected_lufs, abs=TOLERANCE_LU)
    assert true_peak_db(audio, rate) == pytest.approx(expected_peak, abs=0.3)


def test_the_meter_fed_in_blocks_reads_as_the_whole_signal() -> None:
    audio = signals(24000)["gated: -36/-20/-36 dBFS"]
    meter = LoudnessMeter(24000)
    for start in range(0, audio.size, 7919):  # blocks that do not line up with its own
        meter.add(audio[start : start + 7919])
    assert meter.integrated() == pytest.approx(reference(audio, 24000)[0], abs=TOLERANCE_LU)


@pytest.mark.parametrize("freq", [1000, 5000, 7000, 9000, 11000])
def test_true_peak_agrees_with_libebur128(freq: float) -> None:
    """Inter-sample peaks of tones up to near Nyquist, faded in and out over 10 ms as every
    chunk is (a tone that starts at full level rings on resampling: there the long sinc
    resampler reads up to 0.5 dB above libebur128's short interpolator, on the safe side)."""
    audio = tone(freq, -6, 2, 24000)
    ramp = np.linspace(0, 1, 240, dtype=np.float32)
    audio[:240] *= ramp
    audio[-240:] *= ramp[::-1]
    measured, expected = true_peak_db(audio, 24000), reference(audio, 24000)[1]
    assert measured == pytest.approx(expected, abs=0.1)
    # a sine's true peak is its amplitude, wherever its samples fall
    assert measured == pytest.approx(-6.0, abs=0.1)
