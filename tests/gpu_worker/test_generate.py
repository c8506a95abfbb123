"""Best-of-N on the real embedded engine, heard by the real Whisper tiny.en."""

import base64

import numpy as np
import pytest

from gpu_worker.errors import InputError
from gpu_worker.generate import Worker
from gpu_worker.schema import GenerateRequest, parse_request
from gpu_worker.wav import decode_wav

TEXT = "The harbour board met on the second floor of the old customs house."


def test_a_clear_sentence_passes_with_every_score_reported(worker: Worker) -> None:
    result = worker.generate(GenerateRequest(text=TEXT, n_candidates=3, seed=7))
    assert result.passed
    assert result.best_score >= 90
    assert result.metadata.candidates_generated == 3
    assert [c.seed for c in result.metadata.candidates] == [7, 8, 9]
    assert len(result.metadata.all_scores) == 3
    assert result.metadata.retries_used == 0
    audio, rate = decode_wav(base64.b64decode(result.audio_base64))
    assert rate == result.sample_rate == 24000
    assert audio.size / rate == pytest.approx(result.audio_duration_seconds, abs=0.01)
    assert 2.5 < result.audio_duration_seconds < 8  # 13 words
    assert "customs house" in result.transcript.lower()


def test_unreachable_threshold_runs_every_round_and_returns_the_best(worker: Worker) -> None:
    request = GenerateRequest(
        text="Zxqvb Plorkwitz gnarfled the Vrendish quomp.",
        n_candidates=1,
        max_retries=2,
        whisper_threshold=100,
        seed=3,
    )
    result = worker.generate(request)
    candidates = result.metadata.candidates
    assert not result.passed
    assert [c.round for c in candidates] == [0, 1, 2]
    assert [c.seed for c in candidates] == [3, 4, 5]
    assert result.metadata.retries_used == 2
    assert result.best_score == max(c.score for c in candidates)
    assert all("below_threshold" in c.reasons for c in candidates)


def test_the_same_seed_gives_the_same_audio(worker: Worker) -> None:
    first = worker.candidate(GenerateRequest(text=TEXT), 0, seed=11)
    again = worker.candidate(GenerateRequest(text=TEXT), 0, seed=11)
    other = worker.candidate(GenerateRequest(text=TEXT), 0, seed=12)
    assert np.array_equal(first.audio, again.audio)
    assert not np.array_equal(first.audio, other.audio)


def test_an_unknown_voice_names_the_available_ones(worker: Worker) -> None:
    with pytest.raises(InputError, match=r"voice 'nobody'.*available offline: heart"):
        worker.generate(GenerateRequest(text=TEXT, voice="nobody"))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"text": "hi", "n_candidates": 0}, r"n_candidates: .*greater than or equal to 1.*got 0"),
        (
            {"text": "hi", "whisper_threshold": 150},
            r"whisper_threshold: .*less than or equal to 100",
        ),
        ({"text": ""}, r"text: .*at least 1 character"),
        ({"n_candidates": 2}, r"text: Field required"),
        ({"text": "hi", "speed": 2}, r"speed: Extra inputs are not permitted"),
        ("not an object", r"input: Input should be a valid dictionary"),
    ],
)
def test_a_bad_request_names_the_field(payload: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_request(payload)
