"""The scorer compares meaning-equivalent writings as equal and counts real errors."""

import pytest

from gpu_worker.schema import GenerationParams
from gpu_worker.scoring import align, compare, score, words


@pytest.mark.parametrize(
    ("text", "heard"),
    [
        ("four dollars and fifty cents", "$4.50"),
        ("at seven thirty a.m.", "at 7.30 am"),
        ("on March third, twenty twenty-one", "on March 3, 2021"),
        ("Doctor Smith", "Dr. Smith"),
        ("one hundred and twenty people", "120 people"),
        ("the harbour-board crest was grey", "the harbor board crest was gray"),
        ("she realised the colour of the theatre", "she realized the color of the theater"),
        ("He climbed to the lamp room.", "He climbed to the lamproom"),
        ("a notebook", "a note book"),
        ("twenty-one", "twenty one"),
        ('"Really?" she asked.', "Really, she asked"),
        ("It's seven o'clock", "its 7 o'clock"),
    ],
)
def test_equivalent_writings_score_100(text: str, heard: str) -> None:
    assert score(text, heard) == 100.0


def test_counts_substitutions_deletions_insertions() -> None:
    assert align(["a", "b", "c"], ["a", "x", "c"]).substitutions == 1
    shifted = align(["a", "b", "c", "d"], ["a", "c", "d", "e"])
    assert (shifted.substitutions, shifted.deletions, shifted.insertions) == (0, 1, 1)
    mixed = align(["a", "b", "c", "d", "e"], ["a", "x", "c", "e", "f", "g"])
    assert mixed.errors == 4
    assert mixed.wer == pytest.approx(4 / 5)


def test_the_default_threshold_passes_one_slip_in_ten_words_and_refuses_two() -> None:
    """What a user tuning --threshold relies on: at the default (85) a ten-word sentence
    read with one word wrong is kept, with two wrong it is made again; a reading of
    something else entirely scores nothing, however long it runs."""
    threshold = GenerationParams().whisper_threshold
    text = "the keeper climbed the stairs and lit the great lamp"
    assert score(text, "the keeper climbed the stairs and lit the great lamp") == 100
    assert score(text, "the keeper climbed the stairs and lit the grey lamp") >= threshold
    assert score(text, "the keeper climbed the stairs and lit the lamp") >= threshold
    assert score(text, "the keeper climbed the chairs and lit the grey lamp") < threshold
    assert score(text, "the keeper climbed and lit the lamp") < threshold
    assert score("one two", "five six seven eight nine ten eleven") == 0.0


def test_truncated_reading_loses_points() -> None:
    text = "The letter reached her on Tuesday at a quarter to eight in the morning."
    assert compare(text, "The letter reached her on Tuesday.").deletions == 8


def test_empty_cases() -> None:
    assert score("", "") == 100.0
    assert score("", "hello") == 0.0
    assert score("hello", "") == 0.0


def test_short_words_are_not_respelled_into_each_other() -> None:
    assert words("four hour our your") == ["four", "hour", "our", "your"]


BRITISH = (
    "The neighbours realised that the theatre's grey colour had faded. She travelled "
    "10 km to the centre, paid £3.50 for a programme, and sat in the harbour, "
    "analysing the catalogue of aluminium tyres. Their behaviour was honourable."
)
AMERICAN = (
    "The neighbors realized that the theater's gray color had faded. She traveled "
    "ten kilometers to the center, paid three pounds fifty for a program, and sat in the "
    "harbor, analyzing the catalog of aluminum tires. Their behavior was honorable."
)


@pytest.mark.parametrize(("text", "heard"), [(BRITISH, AMERICAN), (AMERICAN, BRITISH)])
def test_british_and_american_spellings_are_one_word(text: str, heard: str) -> None:
    """A British text heard back in Whisper's American spelling (and the reverse) has no
    word flagged: every step of the alignment is a match."""
    alignment = compare(text, heard)
    assert alignment.errors == 0 and alignment.score == 100.0
    assert {kind for kind, _, _ in alignment.steps} == {"M"}


@pytest.mark.parametrize(
    ("text", "heard"),
    [
        ("He joined the U.N. in 1990.", "He joined the UN in 1990."),
        ("Made in the U.S.A.", "Made in the USA."),
        ("the U S Army", "the U.S. Army"),
        ("Louis XIV ruled.", "Louis the 14th ruled."),
        ("World War II", "World War 2"),
        ("St. Paul's", "Saint Paul's"),
        ("It cost £3.50.", "It cost three pounds fifty."),
        ("on 14 July 1789", "on the 14th of July 1789"),
    ],
)
def test_forms_read_as_written_score_100(text: str, heard: str) -> None:
    assert score(text, heard) == 100.0


def test_a_real_misreading_still_counts_after_respelling() -> None:
    assert compare("the colour of the harbour", "the colour of the harvest").substitutions == 1
