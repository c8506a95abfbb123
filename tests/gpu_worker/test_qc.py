import numpy as np

from gpu_worker.qc import signal_gates

RATE = 24000


def tone(seconds: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_a_plain_signal_of_plausible_length_passes() -> None:
    assert signal_gates(tone(3.0), RATE, word_count=8) == []


def test_empty_and_silent_candidates_are_rejected() -> None:
    assert signal_gates(np.zeros(0, np.float32), RATE, 5) == ["empty"]
    assert signal_gates(np.zeros(RATE, np.float32), RATE, 5) == ["silent"]


def test_clipping_is_detected() -> None:
    assert "clipped" in signal_gates(np.clip(tone(3.0, 2.0), -1, 1), RATE, 8)


def test_a_reading_far_too_short_or_long_for_its_words_is_rejected() -> None:
    assert "implausible_duration" in signal_gates(tone(0.5), RATE, word_count=20)
    assert "implausible_duration" in signal_gates(tone(30.0), RATE, word_count=5)
