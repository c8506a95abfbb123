"""Phase 1: a chapter file becomes chunks a TTS model reads well.

    decode_chapter   bytes -> text (UTF-8, BOM and CRLF fine; UTF-16 with a BOM accepted)
    parse_blocks     text -> headings, paragraphs and scene breaks (markdown aware)
    make_chunks      blocks -> chunks: sentence-aware, near `target_chars`, never over
                     `max_chars`, each with the break after it and its span in the source

Inline markup is removed into a "clean" text that remembers, for every character, where it
came from; sentences are split on that clean text and only then verbalised (spoken.py), so
spans always point into the source and lengths are measured on what the engine will read.
Spans are character offsets into the decoded text (newlines normalised to "\\n").
"""

import codecs
import html
import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Literal

from prefect import get_run_logger, task
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gpu_worker.errors import InputError
from gpu_worker.spoken import NON_TERMINAL, TITLES, readable, verbalize
from tasks import storage

Break = Literal["clause", "sentence", "turn", "paragraph", "section", "end"]


class ChunkingOptions(BaseModel):
    """How text is cut into chunks. Lengths are in characters of normalised text."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target_chars: int = Field(
        275,
        ge=40,
        le=1000,
        description="Sentences are packed into a "
        "chunk until the next would take it past this length.",
    )
    max_chars: int = Field(
        400,
        ge=60,
        le=2000,
        description="Hard limit: a longer sentence is "
        "split at clause punctuation, then between words.",
    )
    min_chars: int = Field(
        20,
        ge=0,
        le=200,
        description="Shorter fragments are merged into a "
        "neighbour (TTS models garble very short inputs).",
    )

    @model_validator(mode="after")
    def _ordered(self) -> "ChunkingOptions":
        if not self.min_chars < self.target_chars <= self.max_chars:
            raise ValueError(
                f"need min_chars < target_chars <= max_chars, got {self.min_chars}"
                f" / {self.target_chars} / {self.max_chars}"
            )
        return self


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str  # normalised: exactly what the engine is asked to say
    break_after: Break  # the pause that follows it
    span: tuple[int, int]  # [start, end) in the decoded source text
    display: str  # the source text without markup: what subtitles show
    heading: bool = False
    speaker: str | None = None  # a dialogue speaker (a cast name); None: the narrator


@dataclass(frozen=True)
class Block:
    kind: Literal["heading", "paragraph", "break"]
    segments: tuple[tuple[int, int], ...] = ()  # source ranges of its lines' content
    speaker: str | None = None


@dataclass
class _Clean:
    text: str = ""
    offsets: list[int] = field(default_factory=list)  # source offset of each character

    def add(self, chars: str, at: int) -> None:
        self.text += chars
        self.offsets.extend([at] * len(chars))


# -- decoding ---------------------------------------------------------------------------------


def decode_chapter(data: bytes, name: str) -> str:
    """Chapter bytes -> text. Binary or mis-encoded input fails naming the file and offset.

    Accepted: UTF-8 (with or without a BOM), UTF-16 (with a BOM, or plainly UTF-16 text
    without one), CRLF or CR line ends, and HTML documents (converted to headings and
    paragraphs, scripts and styles dropped). Terminal escape sequences, control characters
    and bidi overrides are removed; a form feed is a paragraph break. Refused, saying why:
    binary files, other encodings, empty files, and text mostly in scripts the English
    engines cannot read.
    """
    bom = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    utf16 = "utf-16" if bom else _utf16_without_bom(data)
    if utf16:
        try:
            text = data.decode(utf16)
        except UnicodeDecodeError as e:
            raise InputError(f"{name}: broken UTF-16 at byte offset {e.start}") from e
    else:
        nul = data.find(b"\x00")
        if nul >= 0:
            raise InputError(
                f"{name}: looks like a binary file (NUL byte at byte offset {nul}); "
                "narrator reads plain text, markdown or HTML"
            )
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise InputError(
                f"{name}: not UTF-8 text (byte 0x{data[e.start]:02x} at byte offset {e.start}); "
                "save the file as UTF-8 and try again"
            ) from e
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if _is_html(text, name):
        text = html_to_text(text)
    text = _CONTROL.sub(lambda m: _CONTROL_AS.get(m[0], ""), text)
    if not text.strip():
        raise InputError(f"{name}: the file is empty; there is nothing to narrate")
    _check_script(text, name)
    return text


def _utf16_without_bom(data: bytes) -> str | None:
    """ "utf-16-le" or "utf-16-be" when `data` is plainly UTF-16 text with no BOM: a NUL in
    every other byte of its start, as Latin text has in UTF-16."""
    head = data[:2000]
    if len(head) < 4 or len(head) % 2:
        return None
    for codec, zeros in (("utf-16-le", head[1::2]), ("utf-16-be", head[0::2])):
        if zeros.count(0) >= 0.9 * len(zeros) and head.count(0) <= 0.6 * len(head):
            return codec
    return None


# ANSI escape sequences, C0/C1 control characters but newline and tab, bidi embeddings,
# overrides and isolates (a "trojan source" reordering has no place in subtitles).
_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]"
)
_CONTROL_AS = {"\x0c": "\n\n", "\x0b": "\n", "\x1f": " ", "\x1e": "\n"}


def unreadable_words(text: str) -> list[str]:
    """Words with letters in scripts the engines cannot read (left out of the speech)."""
    return [w for w in re.findall(r"\w+", text) if any(c.isalpha() and not readable(c) for c in w)]


def _script(char: str) -> str:
    word = unicodedata.name(char, "unknown").split()[0]
    return word if len(word) <= 3 else word.title()  # "CJK", "Arabic"


def _check_script(text: str, name: str) -> None:
    letters = [c for c in text if c.isalpha()]
    foreign = [c for c in letters if not readable(c)]
    if letters and len(foreign) > len(letters) / 2:
        scripts = sorted({_script(c) for c in foreign})
        raise InputError(
            f"{name}: {100 * len(foreign) / len(letters):.0f} % of its letters are in "
            f"scripts the engines cannot read ({', '.join(scripts[:4])}); narrator reads "
            "English text (words in other scripts inside English text are left out)"
        )


_HTML_START = re.compile(
    r"\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html)\b", re.I | re.S
)


def _is_html(text: str, name: str) -> bool:
    return name.lower().endswith((".html", ".htm", ".xhtml")) or bool(_HTML_START.match(text))


_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})


class _HtmlText(HTMLParser):
    """An HTML document as the markdown-like text parse_blocks reads: headings as `#`,
    block elements as paragraphs, table rows as `| a | b |` lines, `<hr>` as a scene break;
    script, style, head and other unspoken elements dropped."""

    SKIP = frozenset(
        {"script", "style", "head", "noscript", "template", "svg", "math", "iframe", "object"}
    )
    BLOCK = frozenset({
        "p", "div", "section", "article", "main", "header", "footer", "aside", "nav",
        "blockquote", "ul", "ol", "dl", "dt", "dd", "table", "figure", "figcaption", "pre",
    })  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in _HEADINGS:
            self.out.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag == "li":
            self.out.append("\n\n- ")
        elif tag == "tr":
            self.out.append("\n|")
        elif tag == "br":
            self.out.append("\n")
        elif tag == "hr":
            self.out.append("\n\n***\n\n")
        elif tag in self.BLOCK:
            self.out.append("\n\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.SKIP:
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in {"td", "th"}:
            self.out.append(" | ")
        elif tag in self.BLOCK or tag in _HEADINGS or tag in ("li", "tr"):
            self.out.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.out.append(re.sub(r"\s+", " ", data))  # whitespace in HTML is not layout


def html_to_text(document: str) -> str:
    parser = _HtmlText()
    parser.feed(document)
    parser.close()
    lines = [line.strip() for line in "".join(parser.out).split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def read_chapter(location: str, max_bytes: int, endpoint_url: str | None = None) -> str:
    """Read and decode a chapter (a path or an s3:// URI), refusing anything larger than
    `max_bytes`."""
    found = storage.size(location, endpoint_url)
    if found > max_bytes:
        raise InputError(
            f"{location}: {found:,} bytes is over the {max_bytes:,}-byte limit "
            "(NARRATOR_MAX_CHAPTER_BYTES); split the chapter into smaller files"
        )
    return decode_chapter(storage.read_bytes(location, endpoint_url), location)


# -- structure --------------------------------------------------------------------------------

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


# -- inline markup ----------------------------------------------------------------------------

_INLINE = re.compile(
    r"(?P<image>!\[[^\]]*\]\([^)]*\))"
    r"|\[(?P<label>[^\]]+)\](?:\([^)]*\)|\[[^\]]*\])"
    r"|(?P<footnote>\[\^[^\]]+\])"
    r"|(?P<entity>&(?:[A-Za-z]+|#\d+|#x[0-9A-Fa-f]+);)"
    r"|(?P<tag></?[A-Za-z][^>]*>)"
    r"|(?P<mark>`+|\*+|~~|(?<!\w)_+|_+(?!\w))"
    r"|(?P<pipe>\|)"
)


def clean_inline(source: str, segments: tuple[tuple[int, int], ...]) -> _Clean:
    """Markdown and HTML inline markup removed; whitespace collapsed; offsets kept."""
    raw = _Clean()
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
    clean = _Clean()
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


# -- sentences and pieces ---------------------------------------------------------------------

_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)")
_CLAUSE_END = re.compile(r"(?:[,;:]|\.\.\.|…|\s[-–—]+)(?=\s)")


def _ends_sentence(text: str, m: re.Match[str]) -> bool:
    following = text[m.end() :].lstrip()
    if not following or following[0].islower():
        return False
    if "." not in m[0] or m[0].startswith(("..", "…")):
        return True
    word = text[: m.start()].rsplit(" ", 1)[-1].lstrip("\"'“‘([")
    return not (word in NON_TERMINAL or (len(word) == 1 and word.isalpha()))


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence ranges in `text`. Titles, initials and abbreviations do not end sentences,
    and neither does punctuation before a lower-case word ("Really?" she asked)."""
    ranges, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        if _ends_sentence(text, m):
            ranges.append((start, m.end()))
            start = m.end() + 1
    if start < len(text):
        ranges.append((start, len(text)))
    return ranges


def _cut(text: str, start: int, end: int, pattern: re.Pattern[str]) -> list[tuple[int, int]]:
    pieces, cursor = [], start
    for m in pattern.finditer(text, start, end):
        if m.end() < end:
            pieces.append((cursor, m.end()))
            cursor = m.end() + 1
    pieces.append((cursor, end))
    return [(s, e) for s, e in pieces if e > s]


def _binds_forward(word: str) -> bool:
    """A title or an initial belongs with the word after it ("Dr. Okafor", "J. Smith")."""
    bare = word.lstrip("\"'“‘([").rstrip(".")
    return bare in TITLES or (len(bare) == 1 and bare.isupper() and word.endswith("."))


def _fit(text: str, start: int, end: int, opts: ChunkingOptions) -> list[tuple[int, int]]:
    """Ranges no longer than max_chars once spoken: clause punctuation first, then words,
    then (a single enormous token) characters."""
    if len(verbalize(text[start:end])) <= opts.max_chars:
        return [(start, end)]
    clauses = _cut(text, start, end, _CLAUSE_END)
    if len(clauses) > 1:
        return [r for s, e in clauses for r in _fit(text, s, e, opts)]
    words = _cut(text, start, end, re.compile(r"\S(?=\s)"))
    if len(words) == 1:  # one enormous token: cut it wherever it fits
        step = opts.target_chars
        while step > 1 and any(
            len(verbalize(text[s : s + step])) > opts.max_chars for s in range(start, end, step)
        ):
            step //= 2
        return [(s, min(s + step, end)) for s in range(start, end, step)]
    ranges, first = [], words[0][0]
    for (s, e), (_, next_end) in zip(words, [*words[1:], (end, end)], strict=True):
        too_long = len(verbalize(text[first:next_end])) > opts.target_chars
        if e == end or (too_long and not _binds_forward(text[s:e])):
            ranges.append((first, e))
            first = e + 1
    return [r for s, e in ranges for r in _fit(text, s, e, opts)]


@dataclass
class _Piece:
    text: str  # spoken form
    display: str  # written form, markup removed
    start: int  # source offsets
    end: int
    break_after: Break

    def join(self, other: "_Piece") -> "_Piece":
        return _Piece(
            f"{self.text} {other.text}",
            f"{self.display} {other.display}",
            self.start,
            other.end,
            other.break_after,
        )


def _pieces(clean: _Clean, opts: ChunkingOptions) -> list[_Piece]:
    pieces = []
    for s_start, s_end in split_sentences(clean.text):
        ranges = _fit(clean.text, s_start, s_end, opts)
        for i, (start, end) in enumerate(ranges):
            spoken = verbalize(clean.text[start:end])
            if any(c.isalnum() for c in spoken):
                pieces.append(
                    _Piece(
                        spoken,
                        clean.text[start:end],
                        clean.offsets[start],
                        clean.offsets[end - 1] + 1,
                        "sentence" if i == len(ranges) - 1 else "clause",
                    )
                )
    return pieces


def _pack(pieces: list[_Piece], opts: ChunkingOptions) -> list[_Piece]:
    """Consecutive pieces joined while they stay near the target; tiny ones always joined
    to a neighbour when the result stays under the maximum."""
    packed: list[_Piece] = []
    for piece in pieces:
        if packed:
            last = packed[-1]
            joined = len(last.text) + 1 + len(piece.text)
            tiny = min(len(last.text), len(piece.text)) < opts.min_chars
            if joined <= opts.target_chars or (tiny and joined <= opts.max_chars):
                packed[-1] = last.join(piece)
                continue
        packed.append(piece)
    return packed


def _terminate(text: str) -> str:
    return text if re.search(r"[.!?…][\"'”’)\]]*$", text) else text.rstrip(",;:") + "."


# -- chunks -----------------------------------------------------------------------------------


def make_chunks(text: str, options: ChunkingOptions, speakers: Collection[str] = ()) -> list[Chunk]:
    """The chapter as chunks, in reading order. A chunk never crosses a speaker's turn, and
    a change of speaker is a "turn" break (its own pause)."""
    drafts: list[tuple[_Piece, Block]] = []
    for block in parse_blocks(text, speakers):
        if block.kind == "break":
            if drafts:
                drafts[-1][0].break_after = "section"
            continue
        pieces = _pack(_pieces(clean_inline(text, block.segments), options), options)
        if not pieces:
            continue
        pieces[-1].text = _terminate(pieces[-1].text)
        if drafts and drafts[-1][0].break_after != "section":
            drafts[-1][0].break_after = (
                "section"
                if block.kind == "heading"
                else "turn"
                if block.speaker != drafts[-1][1].speaker
                else "paragraph"
            )
        if (
            block.kind != "heading"
            and drafts
            and drafts[-1][1].kind != "heading"
            and drafts[-1][0].break_after == "paragraph"
            and len(pieces) == 1
            and len(pieces[0].text) < options.min_chars
            and len(drafts[-1][0].text) + 1 + len(pieces[0].text) <= options.max_chars
        ):
            # a tiny paragraph ("No.") rides with the one before, by the same voice
            drafts[-1] = (drafts[-1][0].join(pieces[0]), block)
            continue
        drafts.extend((p, block) for p in pieces)
        drafts[-1][0].break_after = "paragraph"
    if not drafts:
        raise InputError(
            "the chapter has no words to narrate (only markup, punctuation or symbols)"
        )
    drafts[-1][0].break_after = "end"
    return [
        Chunk(
            i,
            p.text,
            p.break_after,
            (p.start, p.end),
            p.display,
            heading=block.kind == "heading",
            speaker=block.speaker,
        )
        for i, (p, block) in enumerate(drafts)
    ]


@dataclass(frozen=True)
class PreparedText:
    source: str  # where the chapter came from
    text: str  # the decoded source; chunk spans index into it
    chunks: list[Chunk]

    @property
    def word_count(self) -> int:
        return sum(len(c.text.split()) for c in self.chunks)


@task(name="prepare-text")
def prepare_text(
    source: str,
    options: ChunkingOptions,
    max_bytes: int,
    endpoint_url: str | None = None,
    speakers: list[str] | None = None,
) -> PreparedText:
    """Locate, decode, normalise and split one chapter (a dialogue, given its speakers)."""
    text = read_chapter(source, max_bytes, endpoint_url)
    prepared = PreparedText(source, text, make_chunks(text, options, speakers or ()))
    if left_out := unreadable_words(text):
        get_run_logger().warning(
            "%d words are in scripts the engines cannot read and are left out of the speech "
            "(the subtitles keep them): %s",
            len(left_out),
            ", ".join(sorted(set(left_out))[:20]),
        )
    return prepared
