"""Where the sentence splitter (tasks/text/chunking.py) ends a sentence at an abbreviation:
the knowledge is the vocabulary's (NON_TERMINAL, BEFORE_NUMBER), next to the readings."""

import pytest

from tasks.text.chunking import split_sentences


def sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in split_sentences(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a dotted acronym may end a sentence
        ("He moved to the U.S. Then he left.", ["He moved to the U.S.", "Then he left."]),
        ("It was made in the U.S.A. It was big.", ["It was made in the U.S.A.", "It was big."]),
        ("They met in D.C. and left.", ["They met in D.C. and left."]),
        # titles and Latin abbreviations do not
        ("Dr. Smith met Gen. Lee. They talked.", ["Dr. Smith met Gen. Lee.", "They talked."]),
        ("Ask Prof. Green, e.g. Monday.", ["Ask Prof. Green, e.g. Monday."]),
        ("I saw Lt. Col. Hale at St. Paul's.", ["I saw Lt. Col. Hale at St. Paul's."]),
        ("E.g. Smith did. Fine.", ["E.g. Smith did.", "Fine."]),
        # ... but "etc." and "Jr." can
        ("Apples, etc. Then pears.", ["Apples, etc.", "Then pears."]),
        ("It was King Jr. He spoke.", ["It was King Jr.", "He spoke."]),
        # No., p., months: not before a number, but otherwise they can
        ("See No. 10 for details. No. I won't.", ["See No. 10 for details.", "No.", "I won't."]),
        ("See p. 5 and pp. 10-12. Then stop.", ["See p. 5 and pp. 10-12.", "Then stop."]),
        ("It was Jan. 5 then.", ["It was Jan. 5 then."]),
        ("It was late in Jan. The snow came.", ["It was late in Jan.", "The snow came."]),
        ("It was May. Then June came.", ["It was May.", "Then June came."]),
        ("On Sat. Jan. 5 we met. Fine.", ["On Sat. Jan. 5 we met.", "Fine."]),
        # street words: a street at the end of a sentence ends it
        ("He lives on Fifth Ave. It is loud.", ["He lives on Fifth Ave.", "It is loud."]),
        ("She lives at 12 Main St. Then she left.", ["She lives at 12 Main St.", "Then she left."]),
    ],
)
def test_abbreviations_and_sentence_ends(text: str, expected: list[str]) -> None:
    assert sentences(text) == expected
