"""Phase 1: text into blocks (headings, paragraphs, items, breaks) with clean inline text.

Phase 1, second step: text becomes blocks (headings, paragraphs, list items, table rows,
scene breaks; a dialogue's lines tagged with their speaker), and a block's inline markup is
removed into a clean text that remembers, for every character, where in the source it came
from.
"""

import html
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Literal

from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.footnote import footnote_plugin
from mdit_py_plugins.front_matter import front_matter_plugin

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


_HEADING = re.compile(r"^ {0,3}#{1,6}(?:[ \t]+(.*?))?[ \t]*#*[ \t]*$")
_SCENE_BREAK = re.compile(r"^[ \t]*(?:#|(?:•[ \t]*){3,}|(?:~[ \t]*){3,}|(?:\*[ \t]*){3,})[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_LIST_ITEM = re.compile(r"[ \t]*(?:[-*+]|\d{1,9}[.)])(?:[ \t]+|$)")
_QUOTE = re.compile(r"[ \t]*>[ \t]?")
# Indented code blocks covering more of the text than this are indented paragraphs (a
# plain-text book), not code: the text is read again with indented code switched off.
MOST_INDENTED = 0.3
# HTML blocks that are never prose
_NOT_PROSE_HTML = re.compile(r"^\s*<(?:!--|script|style|\?|!\[CDATA\[|![A-Za-z])", re.I)


# A dialogue line: `ALICE: text` or `[Alice] text`.
_TAG = re.compile(
    r"^[ \t]*(?:\[(?P<bracketed>[^\]\n]{1,40})\]|(?P<caps>[A-Z][A-Z0-9 .'-]{0,39}):)[ \t]+"
)


def _parser(indented_code: bool) -> MarkdownIt:
    md = MarkdownIt("commonmark").enable("table").use(front_matter_plugin).use(footnote_plugin)
    return md if indented_code else md.disable("code")


Footnotes = Literal["skip", "after_paragraph"]
_FOOTNOTE_LABEL = re.compile(r"\[\^[^\]]+\]:[ \t]*")


def parse_blocks(
    text: str, speakers: Collection[str] = (), footnotes: Footnotes = "skip"
) -> list[Block]:
    """The chapter's spoken blocks, in order: headings (ATX and setext), paragraphs (list
    items, quotes and table rows each their own), and scene breaks (`***`, `---`, `#`,
    `• • •`). Parsed as CommonMark (markdown-it-py) with tables, front matter and footnotes.

    Never spoken: front matter, HTML comments and other non-prose HTML blocks, fenced and
    indented code, link reference definitions, a footnote's mark in the text, and images
    (their alt text included: it describes a picture for a reader who cannot see it, which
    a listener of the chapter does not need). Footnotes are skipped, or with
    `footnotes="after_paragraph"` read after the paragraph that first refers to them.

    With `speakers` (a dialogue's cast), a line tagged `NAME: ...` or `[Name] ...` starts a
    turn of that speaker (names match the cast's without regard to case); the turn goes on
    to the next tag or the paragraph's end, and untagged paragraphs are the narrator's."""
    text = _close_fences(text)
    tokens = _parser(indented_code=True).parse(text)
    lines = text.split("\n")
    coded = sum(t.map[1] - t.map[0] for t in tokens if t.type == "code_block" and t.map)
    if coded > MOST_INDENTED * max(1, sum(1 for line in lines if line.strip())):
        tokens = _parser(indented_code=False).parse(text)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)

    def span(number: int, quotes: int, item: bool) -> tuple[int, int]:
        """Line `number`'s content: after `quotes` quote marks and an item's marker."""
        raw = lines[number]
        at = 0
        for _ in range(quotes):
            if m := _QUOTE.match(raw, at):
                at = m.end()
        if item and (m := _LIST_ITEM.match(raw, at)):
            at = m.end()
        while at < len(raw) and raw[at] in " \t":
            at += 1
        return starts[number] + at, starts[number] + len(raw)

    blocks: list[Block] = []
    cast = {s.casefold(): s for s in speakers}
    notes = _footnotes(tokens, text, span) if footnotes == "after_paragraph" else {}
    quotes = 0
    first_in_item = False
    skipping = 0  # inside a footnote definition
    for at, token in enumerate(tokens):
        kind = token.type
        if kind == "footnote_block_open":
            skipping += 1
        elif kind == "footnote_block_close":
            skipping -= 1
        if skipping:
            continue
        if kind == "blockquote_open":
            quotes += 1
        elif kind == "blockquote_close":
            quotes -= 1
        elif kind == "list_item_open":
            first_in_item = True
            empty = at + 1 < len(tokens) and tokens[at + 1].type == "list_item_close"
            if empty and token.info and token.map:  # "1984." alone: a year, not a list
                blocks.append(Block("paragraph", (span(token.map[0], quotes, False),)))
            continue
        elif kind == "hr":
            blocks.append(Block("break"))
        elif kind == "heading_open" and token.map:
            first = token.map[0]
            if token.markup in ("=", "-"):  # setext: its lines, less the underline
                numbers = range(first, token.map[1] - 1)
                segments = tuple(span(n, quotes, first_in_item and n == first) for n in numbers)
            else:
                start, end = span(first, quotes, first_in_item)
                m = _HEADING.match(text[start:end])
                segments = ((start + m.start(1), start + m.end(1)),) if m and m[1] else ()
            blocks.append(Block("heading", segments) if segments else Block("break"))
        elif kind in ("paragraph_open", "tr_open") and token.map:
            numbers = range(token.map[0], token.map[1])
            lines_of = [span(n, quotes, first_in_item and n == token.map[0]) for n in numbers]
            blocks.extend(_turns(text, lines_of, cast, speakers, token.map[0]))
            refs = tokens[at + 1].children or [] if at + 1 < len(tokens) else []
            for ref in refs:
                if ref.type == "footnote_ref":
                    blocks.extend(notes.pop(ref.meta["id"], []))  # each note once
        elif kind == "html_block" and token.map and not _NOT_PROSE_HTML.match(token.content):
            numbers = range(token.map[0], token.map[1])
            prose = tuple(span(n, quotes, False) for n in numbers if lines[n].strip())
            blocks.append(Block("paragraph", prose))
        if token.nesting >= 0:  # a block opened or whole: the item's first has passed
            first_in_item = False
    return blocks


def _footnotes(
    tokens: list[Token], text: str, span: Callable[[int, int, bool], tuple[int, int]]
) -> dict[int, list[Block]]:
    """Each footnote's paragraphs, by its id, without the `[^label]:` that opens it."""
    notes: dict[int, list[Block]] = {}
    current: int | None = None
    for token in tokens:
        if token.type == "footnote_open":
            current = int(token.meta["id"])
            notes[current] = []
        elif token.type == "footnote_close":
            current = None
        elif current is not None and token.type == "paragraph_open" and token.map:
            segments = [span(n, 0, False) for n in range(token.map[0], token.map[1])]
            start, end = segments[0]
            if label := _FOOTNOTE_LABEL.match(text, start, end):
                segments[0] = (label.end(), end)
            notes[current].append(Block("paragraph", tuple(segments)))
    return notes


def _turns(
    text: str,
    segments: list[tuple[int, int]],
    cast: dict[str, str],
    speakers: Collection[str],
    first_line: int,
) -> list[Block]:
    """One paragraph's lines as blocks: a scene-break line alone is a break; with a cast,
    a tagged line starts that speaker's turn."""
    blocks: list[Block] = []
    lines: list[tuple[int, int]] = []
    speaker: str | None = None

    def close() -> None:
        if lines:
            blocks.append(Block("paragraph", tuple(lines), speaker))
            lines.clear()

    for offset, (start, end) in enumerate(segments):
        raw = text[start:end]
        tag = _TAG.match(raw) if cast else None
        if _SCENE_BREAK.match(raw) and len(segments) == 1:
            blocks.append(Block("break"))
        elif tag:
            name = (tag["bracketed"] or tag["caps"]).strip()
            if name.casefold() not in cast:
                raise InputError(
                    f"line {first_line + offset + 1}: speaker {name!r} is not in the cast "
                    f"({', '.join(speakers)}); add them to the cast, or write the line as prose"
                )
            close()
            speaker = cast[name.casefold()]
            lines.append((start + tag.end(), end))
        elif raw.strip():
            lines.append((start, end))
    close()
    return blocks


def _close_fences(text: str) -> str:
    """A code fence that is never closed would, in CommonMark, hide the rest of the chapter:
    such an opening line (`~~~` used as a scene break) becomes a scene break of the same
    length instead, so every offset stays."""
    lines = text.split("\n")
    opened: tuple[int, str] | None = None
    for number, line in enumerate(lines):
        m = _FENCE.match(line)
        if not m:
            continue
        if opened is None:
            opened = (number, m[1])
        elif m[1].startswith(opened[1]) and not line[m.end() :].strip():
            opened = None  # a closing fence: the same character, at least as many
    if opened is not None:
        number, fence = opened
        lines[number] = lines[number].replace(fence, "*" * len(fence), 1)
    return "\n".join(lines)


_INLINE = re.compile(
    r"\\(?P<escaped>[!-/:-@\[-`{-~])"  # a backslash escape: the character itself
    r"|<(?P<autolink>[A-Za-z][A-Za-z0-9+.-]{1,31}:[^<>\s]*|[^<>\s@]+@[^<>\s]+)>"
    r"|(?P<image>!\[[^\]]*\]\([^)]*\))"
    r"|(?P<footnote>\[\^[^\]]+\])"  # before links: "[^1][^2]" is two marks, not a link
    r"|\[(?P<label>[^\]]+)\](?:\([^)]*\)|\[[^\]]*\])"
    r"|(?P<entity>&(?:[A-Za-z]+|#\d+|#x[0-9A-Fa-f]+);)"
    r"|(?P<tag></?[A-Za-z][^>]*>)"
    r"|(?P<mark>`+|(?<!\s)\*+|\*+(?!\s)|~~|(?<!\w)_+|_+(?!\w))"  # " * " alone is text
    r"|(?P<pipe>\|)"
)


_COMMENT = re.compile(r"<!--.*?-->", re.S)


def clean_inline(source: str, segments: tuple[tuple[int, int], ...]) -> Clean:
    """Markdown and HTML inline markup removed (HTML comments with what they hold, even
    across lines); whitespace collapsed; offsets kept."""
    raw = Clean()
    hidden = (
        [m.span() for m in _COMMENT.finditer(source, segments[0][0], segments[-1][1])]
        if segments
        else []
    )

    def add(i: int) -> None:
        if not any(a <= i < b for a, b in hidden):
            raw.add(source[i], i)

    for start, end in segments:
        if raw.text:
            raw.add(" ", start - 1)
        cursor = start
        for m in _INLINE.finditer(source, start, end):
            if any(a <= m.start() < b for a, b in hidden):
                continue  # markup inside a comment: the comment's span drops it
            for i in range(cursor, m.start()):
                add(i)
            if m["escaped"] is not None:
                raw.add(m["escaped"], m.start("escaped"))
            elif m["autolink"] is not None:
                for i in range(m.start("autolink"), m.end("autolink")):
                    raw.add(source[i], i)
            elif m["label"] is not None:
                for i in range(m.start("label"), m.end("label")):
                    add(i)
            elif m["entity"]:
                raw.add(html.unescape(m["entity"]), m.start())
            elif m["pipe"]:
                raw.add(",", m.start())
            cursor = m.end()
        for i in range(cursor, end):
            add(i)
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
