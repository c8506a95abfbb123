"""Phase 3: audio checks and subtitles."""

import itertools
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gpu_worker.errors import PermanentError
from tasks.post import CUE_LINES, LINE_CHARS, check_audio, format_srt, subtitle_cues, verify_audio

RATE = 24000


def write(path: Path, audio: np.ndarray) -> Path:
    sf.write(path, audio, RATE, subtype="PCM_16")
    return path


def noise(seconds: float, level: float = 0.1) -> np.ndarray:
    return (level * np.random.default_rng(0).standard_normal(int(seconds * RATE))).astype(
        np.float32
    )


def test_a_plausible_narration_passes(tmp_path: Path) -> None:
    check = check_audio(write(tmp_path / "a.wav", noise(60)), word_count=150)
    assert check.problems == []
    assert check.duration_seconds == pytest.approx(60)
    assert check.words_per_minute == pytest.approx(150, abs=1)
    assert check.rms_dbfs == pytest.approx(-20, abs=0.5)


def test_silence_and_implausible_length_are_problems(tmp_path: Path) -> None:
    silent = check_audio(write(tmp_path / "s.wav", np.zeros(RATE * 10, np.float32)), 25)
    assert any(p.startswith("silent") for p in silent.problems)
    short = check_audio(write(tmp_path / "t.wav", noise(10)), word_count=400)
    assert any("2400 words per minute" in p for p in short.problems)
    with pytest.raises(PermanentError, match="failed its checks: implausible duration"):
        verify_audio.fn(tmp_path / "t.wav", 400)


def test_an_undecodable_file_is_a_permanent_error(tmp_path: Path) -> None:
    (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(PermanentError, match="does not decode"):
        check_audio(tmp_path / "bad.wav", 10)


def test_cues_respect_line_limits_and_stay_inside_their_segment() -> None:
    long_text = (
        "The harbour board met on the second floor of the old customs house, in a room "
        "that smelled of floor polish and wet wool. There were 14 chairs, 6 people, and "
        "one electric heater that clicked like a clock."
    )
    segments = [("Chapter 1: The Keeper", 0.5, 2.0), (long_text, 2.5, 14.0), ("Fine.", 15, 15.6)]
    cues = subtitle_cues(segments)
    assert all(len(c.lines) <= CUE_LINES for c in cues)
    assert all(len(line) <= LINE_CHARS for c in cues for line in c.lines)
    assert all(a.end <= b.start for a, b in itertools.pairwise(cues))
    assert cues[0].start == 0.5 and cues[-1].end == 15.6
    inside = [c for c in cues if c.start >= 2.5 and c.end <= 14.0]
    assert " ".join(" ".join(c.lines) for c in inside) == long_text


def test_srt_format() -> None:
    srt = format_srt(subtitle_cues([("Hello there.", 3661.5, 3663.25)]))
    assert srt == "1\n01:01:01,500 --> 01:01:03,250\nHello there.\n\n"
    assert re.fullmatch(r"(\d+\n[\d:,]+ --> [\d:,]+\n(.+\n)+\n)+", srt)
