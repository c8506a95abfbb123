"""Word-timed subtitles: written words placed by the times of the words heard."""

import itertools
import re

import pytest

from gpu_worker.schema import WordTiming
from tasks.audio import Placement
from tasks.subtitles import CUE_LINES, LINE_CHARS, TimedWord, chunk_words, cues, srt, vtt

HEARD = [
    WordTiming(word=w, start=s, end=e)
    for w, s, e in [
        ("It", 0.5, 0.7),
        ("cost", 0.7, 1.0),
        ("$4.50", 1.0, 2.1),
        ("at", 2.1, 2.3),
        ("7.45", 2.3, 2.9),
        ("AM.", 2.9, 3.3),
    ]
]
PLACEMENT = Placement(start=10.0, end=13.0, lead=0.4)


def test_written_words_take_the_times_of_what_was_heard() -> None:
    words = chunk_words("It cost $4.50 at 7:45 a.m.", HEARD, PLACEMENT)
    assert [w.text for w in words] == ["It", "cost", "$4.50", "at", "7:45", "a.m."]
    money = words[2]
    assert (money.start, money.end) == pytest.approx((10.6, 11.7), abs=0.01)
    assert words[4].start == pytest.approx(11.9, abs=0.01)
    assert all(a.start <= b.start for a, b in itertools.pairwise(words))


def test_a_word_whisper_missed_is_placed_between_its_neighbours() -> None:
    heard = [h for h in HEARD if h.word != "at"]
    words = chunk_words("It cost $4.50 at 7:45 a.m.", heard, PLACEMENT)
    assert words[2].end <= words[3].start <= words[4].start


def test_without_word_times_the_chunk_span_is_shared() -> None:
    words = chunk_words("One two three four.", [], PLACEMENT)
    assert words[0].start == 10.0 and words[-1].end == pytest.approx(13.0)


def timed(text: str, start: float, step: float = 0.3) -> list[TimedWord]:
    return [
        TimedWord(w, start + i * step, start + i * step + 0.25) for i, w in enumerate(text.split())
    ]


def test_cues_keep_the_line_limits_and_never_overlap() -> None:
    words = timed(
        "The harbour board met on the second floor of the old customs house, in "
        "a room that smelled of floor polish and wet wool. There were fourteen "
        "chairs, six people, and one electric heater that clicked like a clock.",
        1.0,
    )
    words += timed("Later.", 30.0)
    made = cues(words)
    assert all(len(c.lines) <= CUE_LINES for c in made)
    assert all(len(line) <= LINE_CHARS for c in made for line in c.lines)
    assert all(a.end <= b.start for a, b in itertools.pairwise(made))
    assert made[-1].text == "Later." and made[-1].start == 30.0  # a long gap starts a cue
    assert " ".join(c.text for c in made[:-1]) == " ".join(w.text for w in words[:-1])
    assert all(c.end - c.start <= 7.5 for c in made)


def test_srt_and_vtt_formats() -> None:
    made = cues([TimedWord("Hello", 3661.5, 3662.0), TimedWord("there.", 3662.1, 3663.25)])
    assert srt(made) == "1\n01:01:01,500 --> 01:01:03,250\nHello there.\n\n"
    assert vtt(made) == "WEBVTT\n\n01:01:01.500 --> 01:01:03.250\nHello there.\n\n"
    assert re.fullmatch(r"(\d+\n[\d:,]+ --> [\d:,]+\n(.+\n)+\n)+", srt(made))
