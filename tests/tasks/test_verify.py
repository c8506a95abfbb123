"""Phase 3: the audio check measures pace, loudness and the ACX figures."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gpu_worker.errors import PermanentError
from tasks.verify import check_audio, verify_audio

RATE = 24000


def write(path: Path, audio: np.ndarray) -> Path:
    sf.write(path, audio, RATE, subtype="PCM_16")
    return path


def noise(seconds: float, level: float = 0.1) -> np.ndarray:
    return (level * np.random.default_rng(0).standard_normal(int(seconds * RATE))).astype(
        np.float32
    )


def test_a_plausible_narration_passes_and_is_measured(tmp_path: Path) -> None:
    quiet = np.zeros(RATE, np.float32)  # a second of digital silence: the noise floor
    check = check_audio(
        write(tmp_path / "a.wav", np.concatenate([quiet, noise(59)])), 150, target=(-18.0, -3.0)
    )
    assert check.problems == []
    assert check.duration_seconds == pytest.approx(60)
    assert check.words_per_minute == pytest.approx(150, abs=1)
    assert check.acx.rms_dbfs == pytest.approx(-20, abs=0.5)
    assert check.acx.rms_ok and check.acx.noise_floor_ok
    assert check.acx.noise_floor_dbfs == -120.0
    assert check.acx.peak_dbfs == pytest.approx(-6.0, abs=0.5) and check.acx.peak_ok
    assert -25 < check.integrated_lufs < -15
    assert check.loudness_ok is (
        abs(check.integrated_lufs + 18) <= 1 and check.true_peak_dbtp <= -3
    )


def test_silence_and_implausible_length_are_problems(tmp_path: Path) -> None:
    silent = check_audio(write(tmp_path / "s.wav", np.zeros(RATE * 10, np.float32)), 25)
    assert any(p.startswith("silent") for p in silent.problems)
    short = check_audio(write(tmp_path / "t.wav", noise(10)), word_count=400)
    assert any("2400 words per minute" in p for p in short.problems)
    with pytest.raises(PermanentError, match="failed its checks: implausible duration"):
        verify_audio.fn(tmp_path / "t.wav", 400, None)


def test_an_undecodable_file_is_a_permanent_error(tmp_path: Path) -> None:
    (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(PermanentError, match="does not decode"):
        check_audio(tmp_path / "bad.wav", 10)
