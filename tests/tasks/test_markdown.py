"""Markdown read as a narrator reads it: the story spoken, everything else silent
(tasks/text/blocks.py, CommonMark by markdown-it-py)."""

import json
from pathlib import Path

import pytest

from tasks.text import ChunkingOptions, clean_inline, decode_chapter, make_chunks, parse_blocks

OPTIONS = ChunkingOptions()

# Each part that must not be spoken holds one animal's name; the story holds none of them.
CHAPTER = """---
title: The Keeper of Zebra Rock
author: Walrus Press
---

<!-- editor: check the pelican scene before print -->

The Lamp
========

The keeper climbed the stairs at dusk.[^1] The beam swept out over the water.
She counted the ships: *three* by the harbour, __two__ beyond it.

```python
toucan = "never read this"
```

    flamingo_count = 7

![A giraffe on the cliff](giraffe.png)

Read the [log book][log] each night, and write \\*every\\* ship in it.

> The sea keeps its own hours,
> she wrote in the margin.

| Ship | Flag |
|---|---|
| Mary Rose | blue |

See <https://example.org/tides> for the tides.

[log]: https://example.org/iguana-manual

* * *

~~~

Morning came grey and still. <!-- a lemur note --> The lamp went dark.

[^1]: A footnote about the koala.
"""

NEVER_SPOKEN = ["zebra", "walrus", "pelican", "toucan", "flamingo", "giraffe", "iguana", "lemur"]
NEVER_SPOKEN += ["koala"]


def blocks(text: str) -> list[str]:
    """Each block's text as read (before it is verbalised)."""
    return [clean_inline(text, b.segments).text for b in parse_blocks(text) if b.kind != "break"]


def test_only_the_story_is_spoken() -> None:
    chunks = make_chunks(decode_chapter(CHAPTER.encode(), "ch.md"), OPTIONS)
    said = " ".join(c.text for c in chunks).lower()
    for word in NEVER_SPOKEN:
        assert word not in said, word
    for sentence in [
        "the lamp",
        "the keeper climbed the stairs at dusk.",
        "the beam swept out over the water.",
        "three by the harbour, two beyond it.",
        "read the log book each night, and write every ship in it.",
        "the sea keeps its own hours, she wrote in the margin.",
        "mary rose, blue",
        "morning came grey and still. the lamp went dark.",
    ]:
        assert sentence in said.replace("  ", " "), sentence
    assert "example" in said and "tides" in said  # an autolink is read as its address
    assert chunks[0].heading and chunks[0].display == "The Lamp"
    breaks = [c.break_after for c in chunks]
    assert breaks.count("section") >= 1  # * * * and the unclosed ~~~ are scene breaks


def test_spans_point_at_the_words_in_the_source() -> None:
    source = decode_chapter(CHAPTER.encode(), "ch.md")
    for chunk in make_chunks(source, OPTIONS):
        start, end = chunk.span
        first = chunk.display.split()[0].strip("*_,")
        assert source[start:end].lstrip("*_ ").startswith(first[:3]), (chunk.display, start)


@pytest.mark.parametrize(
    ("markdown", "said"),
    [
        ("Title\n-----\n\nText here.", ["Title", "Text here."]),
        ("# A heading #\n\nText.", ["A heading", "Text."]),
        ("1. First step.\n2. Second step.", ["First step.", "Second step."]),
        ("- one\n  - nested two", ["one", "nested two"]),
        ("> quoted\n> > deeper", ["quoted", "deeper"]),
        ("A \\# of guests came.", ["A # of guests came."]),
        ("Price: \\$5 \\_only\\_.", ["Price: $5 _only_."]),  # as written; then said "only"
        ("***bold italic*** and ~~struck~~ words.", ["bold italic and struck words."]),
        ("Darwin disagreed.[^1][^2] Later work agreed.", ["Darwin disagreed. Later work agreed."]),
        ("Multiply 2 * 3 and *stress* it.", ["Multiply 2 * 3 and stress it."]),
        # a number alone on its line is an empty list item to CommonMark: read, not lost
        ("1984.\n\nIt was a cold year.", ["1984.", "It was a cold year."]),
        ("It began in\n\n1984.", ["It began in", "1984."]),
        ("-\n\nText.", ["Text."]),
    ],
)
def test_commonmark_structure_and_escapes(markdown: str, said: list[str]) -> None:
    assert blocks(markdown) == said


def test_a_plain_text_book_with_indented_paragraphs_is_not_code() -> None:
    book = "    The first paragraph is indented.\n\n    So is the second one.\n"
    assert blocks(book) == [
        "The first paragraph is indented.",
        "So is the second one.",
    ]


def test_html_is_read_as_its_text_not_as_markdown() -> None:
    page = (
        "<html><body><h1>Guests</h1><p># of guests: 12</p>"
        "<p>- not a list</p><p>1. not a list either</p><!-- hidden --></body></html>"
    )
    text = decode_chapter(page.encode(), "ch.html")
    assert blocks(text) == ["Guests", "# of guests: 12", "- not a list", "1. not a list either"]
    assert [b.kind for b in parse_blocks(text)] == ["heading"] + ["paragraph"] * 3


@pytest.mark.usefixtures("prefect_server")
def test_the_narrated_markdown_chapter_is_heard_as_the_story_only(
    tmp_path: Path, cache: Path
) -> None:
    """The whole chapter narrated (embedded voice) and heard again by Whisper: none of the
    parts that are not the story is heard, and every sentence of the story is."""
    from flows.chapter import NarrationOptions, narrate_chapter
    from gpu_worker.schema import GenerationParams

    source = tmp_path / "lamp.md"
    source.write_text(CHAPTER)
    options = NarrationOptions(generation=GenerationParams(n_candidates=1), formats=[])
    result = narrate_chapter(str(source), str(tmp_path / "out"), None, options)
    heard = " ".join(
        c["heard"] for c in json.loads((tmp_path / "out" / "validation.json").read_text())["chunks"]
    ).lower()
    for word in NEVER_SPOKEN:
        assert word not in heard, word
    for words in [
        ["lamp"],
        ["keeper", "climbed", "stairs", "dusk"],
        ["beam", "swept", "water"],
        ["counted", "ships", "three", "two", "beyond"],
        ["log", "book", "night", "every", "ship"],
        ["sea", "keeps", "hours", "margin"],
        ["mary", "rose", "blue"],
        ["tides"],
        ["morning", "grey", "still", "dark"],
    ]:
        missing = [w for w in words if w not in heard.replace("gray", "grey")]
        assert missing == [], (missing, heard)
    assert result.validation_flagged == []


def test_footnotes_can_be_read_after_the_paragraph_that_refers_to_them() -> None:
    text = (
        "The keeper kept a log.[^log] Each night she wrote in it.\n\n"
        "The lamp never failed.[^lamp]\n\n"
        "[^log]: The log is now in the county museum.\n"
        "[^lamp]: Except once, in the winter of 1921,\n"
        "    when the oil froze.\n"
    )
    assert blocks(text) == [
        "The keeper kept a log. Each night she wrote in it.",
        "The lamp never failed.",
    ]
    read = [
        clean_inline(text, b.segments).text for b in parse_blocks(text, footnotes="after_paragraph")
    ]
    assert read == [
        "The keeper kept a log. Each night she wrote in it.",
        "The log is now in the county museum.",
        "The lamp never failed.",
        "Except once, in the winter of 1921, when the oil froze.",
    ]
