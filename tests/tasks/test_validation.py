"""The whole-chapter check hears the finished audio and names the chunk that went wrong."""

from pathlib import Path

import pytest

from gpu_worker.best_of_n import BestOfN
from gpu_worker.schema import GenerateRequest
from gpu_worker.validator import Word
from tasks.audio import AudioOptions, Placement, concatenate
from tasks.text import Chunk
from tasks.validation import Window, assign, judge, validate, windows

TEXTS = [
    "The harbour board met on the second floor of the old customs house.",
    "There were fourteen chairs, six people, and one electric heater.",
    "Doctor Okafor chaired the meeting with his reading glasses pushed up.",
    "The figures are not in dispute, he said, and the beacon costs less.",
    "Nobody laughed this time, and the motion passed six votes to none.",
]


def chunk(index: int, text: str) -> Chunk:
    return Chunk(index, text, "sentence", (0, len(text)), text)


@pytest.fixture(scope="module")
def audio(worker: BestOfN) -> list:
    return [worker.engine.synthesize(GenerateRequest(text=t), seed=0) for t in TEXTS]


def narrate(tmp_path: Path, audio: list, order: list[int]) -> tuple[Path, list[Placement]]:
    path = tmp_path / "chapter.wav"
    placements = concatenate([(audio[i], 24000, "sentence") for i in order], AudioOptions(), path)
    return path, placements


def test_a_clean_chapter_has_a_low_wer_and_nothing_flagged(
    tmp_path: Path, audio: list, worker: BestOfN
) -> None:
    path, placements = narrate(tmp_path, audio, [0, 1, 2, 3, 4])
    result = validate(
        path, [chunk(i, t) for i, t in enumerate(TEXTS)], placements, worker.validator
    )
    assert result.flagged == []
    assert result.wer < 0.08 and result.words > 50


def test_a_swapped_chunk_is_found_and_named(tmp_path: Path, audio: list, worker: BestOfN) -> None:
    path, placements = narrate(tmp_path, audio, [0, 1, 4, 3, 4])  # chunk 2 says chunk 4's text
    result = validate(
        path, [chunk(i, t) for i, t in enumerate(TEXTS)], placements, worker.validator
    )
    assert result.flagged == [2]
    finding = result.chunks[2]
    assert "garble" in finding.flags or "content_loss" in finding.flags
    assert "motion passed" in finding.heard


def test_a_chapter_heard_in_short_windows_names_the_same_chunk(
    tmp_path: Path, audio: list, worker: BestOfN
) -> None:
    path, placements = narrate(tmp_path, audio, [0, 1, 4, 3, 4])
    chunks = [chunk(i, t) for i, t in enumerate(TEXTS)]
    assert len(windows(placements, 6.0)) >= 2
    result = validate(path, chunks, placements, worker.validator, window=6.0)
    assert result.flagged == [2]
    assert [f.index for f in result.chunks] == [0, 1, 2, 3, 4]
    clean = [f for f in result.chunks if not f.flags]
    assert all(f.wer < 0.2 for f in clean), [(f.index, f.heard) for f in clean]


def test_windows_are_cut_in_the_pauses_and_cover_every_chunk() -> None:
    placements = [Placement(0.5 + 10 * i, 8.5 + 10 * i) for i in range(7)]  # 2 s pauses
    found = windows(placements, 25.0)
    assert found == [
        Window(0, 2, 0.0, 29.5),
        Window(3, 5, 29.5, 59.5),
        Window(6, 6, 59.5, float("inf")),
    ]
    assert windows(placements[:1], 25.0) == [Window(0, 0, 0.0, float("inf"))]


def words(text: str, start: float) -> list[Word]:
    return [
        Word(w, start + i * 0.3, start + i * 0.3 + 0.25, 1.0) for i, w in enumerate(text.split())
    ]


def test_each_word_goes_to_the_chunk_that_holds_it() -> None:
    placements = [Placement(0.0, 2.0), Placement(2.5, 4.0)]
    heard = words("one two three", 0.1) + words("four five", 2.6) + words("six", 8.0)
    groups = assign(heard, placements)
    assert [[w.text for w in g] for g in groups] == [
        ["one", "two", "three"],
        ["four", "five", "six"],
    ]


@pytest.mark.parametrize(
    ("heard", "flag"),
    [
        ("the keeper climbed the stairs", "content_loss"),
        (
            "the keeper climbed the stairs and lit the lamp and lit the lamp and lit the lamp",
            "repetition",
        ),
        ("a sleeper clamped her chairs and bit a ramp at bask tonight", "garble"),
    ],
)
def test_what_went_wrong_is_named(heard: str, flag: str) -> None:
    text = "The keeper climbed the stairs and lit the lamp at dusk tonight."
    finding = judge(chunk(7, text), Placement(0.0, 5.0), words(heard, 0.0))
    assert flag in finding.flags and finding.index == 7
