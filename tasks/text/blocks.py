"""Phase 1: text into blocks (headings, paragraphs, items, breaks) with clean inline text.

Phase 1, second step: text becomes blocks (headings, paragraphs, list items, table rows,
scene breaks; a dialogue's lines tagged with their speaker), and a block's inline markup is
removed into a clean text that remembers, for every character, where in the source it came
from.
"""

import html
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Literal

from gpu_worker.errors import InputError


@dataclass(frozen=True)
class Block:
    kind: Literal["heading", "paragraph", "break"]
    segments: tuple[tuple[int, int], ...] = ()  # source ranges of its lines' content
    speaker: str | None = None


@dataclass
class Clean:
    """Text without markup, and for each of its characters the source offset it came from."""

    text: str = ""
    offsets: list[int] = field(default_factory=list)  # source offset of each character

    def add(self, chars: str, at: int) -> None:
        self.text += chars
        self.offsets.extend([at] * len(chars))


_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)[ \t]*#*[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_SCENE_BREAK = re.compile(
    r"^[ \t]*(?:(?:\*[ \t]*){3,}|(?:-[ \t]*){3,}|(?:_[ \t]*){3,}|#|~{3,}"
    r"|(?:•[ \t]*){3,})[ \t]*$"
)
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_LIST_ITEM = re.compile(r"^[ \t]*(?:[-*+]|\d{1,3}[.)])[ \t]+")
_QUOTE = re.compile(r"^[ \t]*(?:>[ \t]?)+")
_TABLE_RULE = re.compile(r"^[ \t]*\|?[ \t]*:?-{3,}:?[ \t]*(?:\|[ \t]*:?-{3,}:?[ \t]*)*\|?[ \t]*$")


# A dialogue line: `ALICE: text` or `[Alice] text`.
_TAG = re.compile(
    r"^[ \t]*(?:\[(?P<bracketed>[^\]\n]{1,40})\]|(?P<caps>[A-Z][A-Z0-9 .'-]{0,39}):)[ \t]+"
)


def parse_blocks(text: str, speakers: Collection[str] = ()) -> list[Block]:
    """Headings (ATX and setext), paragraphs, list items, and scene breaks (`***`, `---`, `#`).
    Fenced code is skipped: it is not meant to be read aloud.

    With `speakers` (a dialogue's cast), a line tagged `NAME: ...` or `[Name] ...` starts a
    turn of that speaker (names match the cast's without regard to case); the turn goes on
    to the next tag or blank line, and untagged paragraphs are the narrator's."""
    blocks: list[Block] = []
    lines: list[tuple[int, int]] = []
    speaker: str | None = None
    cast = {s.casefold(): s for s in speakers}

    def close() -> None:
        nonlocal speaker
        if lines:
            blocks.append(Block("paragraph", tuple(lines), speaker))
            lines.clear()
        speaker = None

    in_fence, pos = False, 0
    for number, raw in enumerate(text.split("\n"), 1):
        start, end = pos, pos + len(raw)
        pos = end + 1
        if _FENCE.match(raw):
            close()
            in_fence = not in_fence
            continue
        if in_fence or (_TABLE_RULE.match(raw) and "|" in raw):
            continue
        tag = _TAG.match(raw) if cast else None
        if not raw.strip():
            close()
        elif tag:
            name = (tag["bracketed"] or tag["caps"]).strip()
            if name.casefold() not in cast:
                raise InputError(
                    f"line {number}: speaker {name!r} is not in the cast "
                    f"({', '.join(speakers)}); add them to the cast, or write the line as prose"
                )
            close()
            speaker = cast[name.casefold()]
            lines.append((start + tag.end(), end))
        elif _SETEXT.match(raw) and len(lines) == 1:
            blocks.append(Block("heading", tuple(lines)))
            lines.clear()
        elif _SCENE_BREAK.match(raw):
            close()
            blocks.append(Block("break"))
        elif m := _HEADING.match(raw):
            close()
            blocks.append(Block("heading", ((start + m.start(1), start + m.end(1)),)))
        else:
            marker = _LIST_ITEM.match(raw) or _QUOTE.match(raw)
            if _LIST_ITEM.match(raw) or raw.lstrip().startswith("|"):
                close()  # list items and table rows are read one by one
            lines.append((start + (marker.end() if marker else 0), end))
    close()
    return blocks


_INLINE = re.compile(
    r"(?P<image>!\[[^\]]*\]\([^)]*\))"
    r"|\[(?P<label>[^\]]+)\](?:\([^)]*\)|\[[^\]]*\])"
    r"|(?P<footnote>\[\^[^\]]+\])"
    r"|(?P<entity>&(?:[A-Za-z]+|#\d+|#x[0-9A-Fa-f]+);)"
    r"|(?P<tag></?[A-Za-z][^>]*>)"
    r"|(?P<mark>`+|\*+|~~|(?<!\w)_+|_+(?!\w))"
    r"|(?P<pipe>\|)"
)


def clean_inline(source: str, segments: tuple[tuple[int, int], ...]) -> Clean:
    """Markdown and HTML inline markup removed; whitespace collapsed; offsets kept."""
    raw = Clean()
    for start, end in segments:
        if raw.text:
            raw.add(" ", start - 1)
        cursor = start
        for m in _INLINE.finditer(source, start, end):
            for i in range(cursor, m.start()):
                raw.add(source[i], i)
            if m["label"] is not None:
                for i in range(m.start("label"), m.end("label")):
                    raw.add(source[i], i)
            elif m["entity"]:
                raw.add(html.unescape(m["entity"]), m.start())
            elif m["pipe"]:
                raw.add(",", m.start())
            cursor = m.end()
        for i in range(cursor, end):
            raw.add(source[i], i)
    clean = Clean()
    for char, at in zip(raw.text, raw.offsets, strict=True):
        if char.isspace():
            if clean.text and not clean.text.endswith(" "):
                clean.add(" ", at)
        else:
            clean.add(char, at)
    while clean.text and clean.text[-1] in " ,":
        clean.text, clean.offsets = clean.text[:-1], clean.offsets[:-1]
    while clean.text and clean.text[0] in " ,":
        clean.text, clean.offsets = clean.text[1:], clean.offsets[1:]
    return clean
