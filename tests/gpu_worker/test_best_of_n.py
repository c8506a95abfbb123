"""Best-of-N on the real embedded engine, heard by the real Whisper tiny.en."""

import base64
from types import SimpleNamespace

import numpy as np
import pytest

from gpu_worker.best_of_n import BestOfN
from gpu_worker.engines.chatterbox import ChatterboxEngine
from gpu_worker.errors import InputError
from gpu_worker.schema import GenerateRequest, parse_request
from gpu_worker.settings import WorkerSettings
from gpu_worker.wav import decode_wav

TEXT = "The harbour board met on the second floor of the old customs house."


def test_a_clear_sentence_passes_with_every_score_reported(worker: BestOfN) -> None:
    result = worker.run(GenerateRequest(text=TEXT, n_candidates=3, seed=7))
    assert result.passed
    assert result.best_score >= 90
    assert result.metadata.candidates_generated == 3
    assert result.metadata.candidates_skipped == 0  # early acceptance is off by default
    assert [c.seed for c in result.metadata.candidates] == [7, 8, 9]
    assert len(result.metadata.all_scores) == 3
    assert result.metadata.retries_used == 0
    audio, rate = decode_wav(base64.b64decode(result.audio_base64))
    assert rate == result.sample_rate == 24000
    assert audio.size / rate == pytest.approx(result.audio_duration_seconds, abs=0.01)
    assert 2.5 < result.audio_duration_seconds < 8  # 13 words
    assert "customs house" in result.transcript.lower()


def test_unreachable_threshold_runs_every_round_and_returns_the_best(worker: BestOfN) -> None:
    request = GenerateRequest(
        text="Zxqvb Plorkwitz gnarfled the Vrendish quomp.",
        n_candidates=1,
        max_retries=2,
        whisper_threshold=100,
        seed=3,
    )
    result = worker.run(request)
    candidates = result.metadata.candidates
    assert not result.passed
    assert [c.round for c in candidates] == [0, 1, 2]
    assert [c.seed for c in candidates] == [3, 4, 5]
    assert result.metadata.retries_used == 2
    assert result.best_score == max(c.score for c in candidates)
    assert all("below_threshold" in c.reasons for c in candidates)


def test_an_excellent_first_candidate_ends_the_round(worker: BestOfN) -> None:
    request = GenerateRequest(text=TEXT, n_candidates=3, seed=7, accept_score=50)
    result = worker.run(request)
    assert result.passed
    assert result.best_score >= 50
    assert result.metadata.candidates_generated == 1
    assert result.metadata.candidates_skipped == 2
    assert [c.seed for c in result.metadata.candidates] == [7]
    assert "customs house" in result.transcript.lower()


def test_early_acceptance_needs_a_passing_candidate(worker: BestOfN) -> None:
    """A score above accept_score is not enough: every gate must pass too, so a round where
    nothing passes is made whole and the next round runs."""
    request = GenerateRequest(
        text="Zxqvb Plorkwitz gnarfled the Vrendish quomp.",
        n_candidates=2,
        max_retries=1,
        whisper_threshold=100,
        accept_score=0,
        seed=3,
    )
    result = worker.run(request)
    assert not result.passed
    assert [(c.round, c.seed) for c in result.metadata.candidates] == [
        (0, 3),
        (0, 4),
        (1, 5),
        (1, 6),
    ]
    assert result.metadata.candidates_skipped == 0


def test_a_batching_engine_makes_its_round_in_one_batch(worker: BestOfN) -> None:
    """Chatterbox's English model decodes a round's candidates together: early acceptance
    leaves its batch whole. Its multilingual loop goes seed by seed, so it can stop early."""
    request = GenerateRequest(text=TEXT, accept_score=90)
    unloaded = SimpleNamespace(conds=None)  # no weights: only the batching policy is asked
    english = ChatterboxEngine(unloaded, WorkerSettings(engine="chatterbox"), "unloaded")
    multilingual = ChatterboxEngine(
        unloaded, WorkerSettings(engine="chatterbox", chatterbox_multilingual=True), "unloaded"
    )
    assert BestOfN(english, worker.validator).groups(request, [4, 5, 6]) == [[4, 5, 6]]
    assert BestOfN(multilingual, worker.validator).groups(request, [4, 5]) == [[4], [5]]
    assert worker.groups(request, [4, 5]) == [[4], [5]]
    assert worker.groups(GenerateRequest(text=TEXT), [4, 5]) == [[4, 5]]


def test_accept_score_is_left_out_of_requests_that_do_not_set_it() -> None:
    """Chunk cache keys hash the request's dump: a request without the setting dumps as it
    did before the setting existed, so adding it regenerated nothing."""
    assert "accept_score" not in GenerateRequest(text=TEXT).model_dump(mode="json")
    assert GenerateRequest(text=TEXT, accept_score=95).model_dump()["accept_score"] == 95
    again = GenerateRequest.model_validate(GenerateRequest(text=TEXT, accept_score=95).model_dump())
    assert again.accept_score == 95


def test_the_same_seed_gives_the_same_audio(worker: BestOfN) -> None:
    first = worker.candidate(GenerateRequest(text=TEXT), 0, seed=11)
    again = worker.candidate(GenerateRequest(text=TEXT), 0, seed=11)
    other = worker.candidate(GenerateRequest(text=TEXT), 0, seed=12)
    assert np.array_equal(first.audio, again.audio)
    assert not np.array_equal(first.audio, other.audio)


def test_an_unknown_voice_names_the_available_ones(worker: BestOfN) -> None:
    with pytest.raises(InputError, match=r"voice 'nobody'.*available offline: heart"):
        worker.run(GenerateRequest(text=TEXT, voice="nobody"))


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
        ({"text": "hi", "accept_score": 101}, r"accept_score: .*less than or equal to 100"),
        ("not an object", r"input: Input should be a valid dictionary"),
    ],
)
def test_a_bad_request_names_the_field(payload: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_request(payload)
