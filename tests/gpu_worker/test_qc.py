"""Quality gates on real engine output, damaged in the ways neural TTS fails."""

from collections.abc import Callable

import numpy as np
import pytest

from gpu_worker.best_of_n import BestOfN, Candidate
from gpu_worker.qc import signal_gates, trim_tail
from gpu_worker.schema import GenerateRequest

REQUEST = GenerateRequest(
    text="The keeper climbed the iron stairs, lit the great lamp, and "
    "watched the beam sweep across the dark water."
)
RATE = 24000


@pytest.fixture(scope="module")
def clean(worker: BestOfN) -> Candidate:
    audio = worker.engine.synthesize(REQUEST, seed=1)
    return worker.judge(REQUEST, 0, 1, audio, 0.0)


def at(seconds: float) -> int:
    return int(seconds * RATE)


def cut_last_words(c: Candidate) -> np.ndarray:
    return c.audio[: at(c.words[-3].start)]


def noise_tail(c: Candidate) -> np.ndarray:
    hiss = 0.03 * np.random.default_rng(0).standard_normal(at(2.0))
    return np.concatenate([c.audio, hiss.astype(np.float32)])


def three_seconds_of_silence(c: Candidate) -> np.ndarray:
    gap = at((c.words[5].end + c.words[6].start) / 2)
    return np.concatenate([c.audio[:gap], np.zeros(at(3.0), np.float32), c.audio[gap:]])


def clipped(c: Candidate) -> np.ndarray:
    return np.clip(c.audio * 8, -1.0, 1.0)


def phrase_repeated(c: Candidate) -> np.ndarray:
    start, end = at(c.words[7].start), at(c.words[10].start)  # "the great lamp"
    return np.concatenate([c.audio[:end], c.audio[start:end], c.audio[end:]])


def replaced_by_silence(c: Candidate) -> np.ndarray:
    return np.zeros_like(c.audio)


def test_the_clean_candidate_passes(clean: Candidate) -> None:
    assert clean.report.passed, clean.report
    assert clean.report.reasons == []
    assert [w.text.strip(",.").lower() for w in clean.words[7:10]] == ["the", "great", "lamp"]


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (cut_last_words, "truncated_end"),
        (noise_tail, "noisy_tail"),
        (three_seconds_of_silence, "long_silence"),
        (clipped, "clipped"),
        (phrase_repeated, "repetition"),
        (replaced_by_silence, "silent"),
    ],
    ids=lambda value: getattr(value, "__name__", value),
)
def test_each_defect_is_rejected_with_its_reason(
    worker: BestOfN, clean: Candidate, damage: Callable[[Candidate], np.ndarray], reason: str
) -> None:
    judged = worker.judge(REQUEST, 0, 1, damage(clean), 0.0)
    assert not judged.report.passed
    assert reason in judged.report.reasons, judged.report


def test_a_short_tail_is_trimmed_not_rejected(worker: BestOfN, clean: Candidate) -> None:
    hiss = (0.03 * np.random.default_rng(1).standard_normal(at(0.6))).astype(np.float32)
    tailed = np.concatenate([clean.audio, hiss])
    judged = worker.judge(REQUEST, 0, 1, tailed, 0.0)
    assert "noisy_tail" not in judged.report.reasons
    trimmed = trim_tail(tailed, RATE, judged.words[-1].end)
    assert trimmed.size < tailed.size
    assert trimmed.size / RATE == pytest.approx(judged.words[-1].end + 0.35, abs=0.02)


def test_signal_gates_on_plain_signals() -> None:
    t = np.arange(at(3.0)) / RATE
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    assert signal_gates(tone, RATE, word_count=8) == []
    assert signal_gates(np.zeros(0, np.float32), RATE, 5) == ["empty"]
    assert "implausible_duration" in signal_gates(tone[: at(0.5)], RATE, word_count=20)
    assert "implausible_duration" in signal_gates(np.tile(tone, 10), RATE, word_count=5)
