"""Phase 1: blocks into chunks a TTS model reads well, each with its break and span.

Phase 1, third step: blocks become chunks a TTS model reads well: sentence-aware, near
`target_chars`, never over `max_chars`, each with the break after it, its span in the source
and its text verbalised for speech (gpu_worker/spoken.py).
"""

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gpu_worker.errors import InputError
from gpu_worker.spoken import Spelling, verbalize
from gpu_worker.vocabulary import (
    BEFORE_NUMBER,
    MONTH_PATTERN,
    NON_TERMINAL,
    STREETS,
    TITLES,
    WEEKDAYS,
)
from tasks.text.blocks import Block, Clean, Footnotes, clean_inline, parse_blocks

Break = Literal["clause", "sentence", "turn", "paragraph", "section", "pause", "end"]
# "pause": a pause mark in the text ("[pause 1.5s]"); its length is the chunk's pause_seconds

# "[pause 1.5s]", "[pause 2 seconds]", "[pause]" (a section's pause): silence, never speech
PAUSE_MARK = re.compile(
    r"\[\s*pause(?:\s+(?P<seconds>\d+(?:\.\d+)?)\s*(?:s|secs?|seconds?)?)?\s*\]", re.I
)
MAX_PAUSE_SECONDS = 60.0


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
    spelling: Spelling = Field(
        "american",
        description="How the units the normaliser writes are spelt: american (kilometer) "
        "or british (kilometre, litre). Either is said the same.",
    )
    footnotes: Footnotes = Field(
        "skip",
        description="Footnotes: skip them, or read each after the paragraph that first "
        "refers to it (after_paragraph).",
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
    # lexicon respellings `text` holds, {respelling: word}: heard either way is a match
    respellings: dict[str, str] = field(default_factory=dict)
    pause_seconds: float | None = None  # the silence after it, when a pause mark asks


_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)")
_CLAUSE_END = re.compile(r"(?:[,;:]|\.\.\.|…|\s[-–—]+)(?=\s)")


def _ends_sentence(text: str, m: re.Match[str]) -> bool:
    """Does this punctuation end a sentence? An abbreviation's period does not ("Dr. Okafor",
    "No. 10", "Jan. 5"), unless the abbreviation may close one and a capital follows ("in
    the U.S. Then", "No. I won't.", "at 12 Main St. Then")."""
    following = text[m.end() :].lstrip()
    if not following or following[0].islower():
        return False
    if "." not in m[0] or m[0].startswith(("..", "…")):
        return True
    before, _, word = text[: m.start()].rpartition(" ")
    word = word.lstrip("\"'“‘([")
    if word in WEEKDAYS and re.match(MONTH_PATTERN, following):
        return False  # "Sat. Jan. 5"
    if word in BEFORE_NUMBER:
        return not following[0].isdigit()
    if word in STREETS and re.search(r"\d\s+[A-Z][a-z]+$", before):
        return True  # a house number and a name before it: a street, "12 Main St."
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
    then (a single enormous token) characters. One character is kept free for the period
    `_terminate` may add to a chunk that ends without one."""
    room = opts.max_chars - 1
    if len(verbalize(text[start:end])) <= room:
        return [(start, end)]
    clauses = _cut(text, start, end, _CLAUSE_END)
    if len(clauses) > 1:
        return [r for s, e in clauses for r in _fit(text, s, e, opts)]
    words = _cut(text, start, end, re.compile(r"\S(?=\s)"))
    if len(words) == 1:  # one enormous token: cut it wherever it fits
        step = opts.target_chars
        while step > 1 and any(
            len(verbalize(text[s : s + step])) > room for s in range(start, end, step)
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
    pause: float | None = None  # seconds, when break_after is "pause"

    def join(self, other: "_Piece") -> "_Piece":
        return _Piece(
            f"{self.text} {other.text}",
            f"{self.display} {other.display}",
            self.start,
            other.end,
            other.break_after,
            other.pause,
        )

    def pause_for(self, mark: float | Break) -> None:
        """A pause mark follows: its seconds, or ("section") a section's pause."""
        if isinstance(mark, str):
            self.break_after, self.pause = mark, None
        else:
            self.break_after, self.pause = "pause", mark


def _stripped(clean: Clean) -> Clean:
    """`clean` without the spaces and commas a pause mark left at its edges."""
    start, end = 0, len(clean.text)
    while start < end and clean.text[start] in " ,":
        start += 1
    while end > start and clean.text[end - 1] in " ,":
        end -= 1
    return Clean(clean.text[start:end], clean.offsets[start:end])


def _marked_parts(clean: Clean) -> list[tuple[Clean, float | Break | None]]:
    """A block's clean text cut at its pause marks: each part, with what follows it (a
    mark's seconds, "section" for a bare `[pause]`, None after the last part)."""
    parts: list[tuple[Clean, float | Break | None]] = []
    cursor = 0
    for m in PAUSE_MARK.finditer(clean.text):
        seconds = float(m["seconds"]) if m["seconds"] else None
        if seconds is not None and seconds > MAX_PAUSE_SECONDS:
            raise InputError(f"{m[0]}: a pause mark is at most {MAX_PAUSE_SECONDS:g} s")
        before = Clean(clean.text[cursor : m.start()], clean.offsets[cursor : m.start()])
        parts.append((before, "section" if seconds is None else seconds))
        cursor = m.end()
    parts.append((Clean(clean.text[cursor:], clean.offsets[cursor:]), None))
    return parts


def _pieces(clean: Clean, opts: ChunkingOptions) -> list[_Piece]:
    pieces = []
    for s_start, s_end in split_sentences(clean.text):
        ranges = _fit(clean.text, s_start, s_end, opts)
        for i, (start, end) in enumerate(ranges):
            spoken = verbalize(clean.text[start:end], opts.spelling)
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
            # the maximum less one: room for the period `_terminate` may add
            if joined <= opts.target_chars or (tiny and joined < opts.max_chars):
                packed[-1] = last.join(piece)
                continue
        packed.append(piece)
    return packed


def _terminate(text: str) -> str:
    return text if re.search(r"[.!?…][\"'”’)\]]*$", text) else text.rstrip(",;:") + "."


def make_chunks(text: str, options: ChunkingOptions, speakers: Collection[str] = ()) -> list[Chunk]:
    """The chapter as chunks, in reading order. A chunk never crosses a speaker's turn, and
    a change of speaker is a "turn" break (its own pause)."""
    drafts: list[tuple[_Piece, Block]] = []
    for block in parse_blocks(text, speakers, options.footnotes):
        if block.kind == "break":
            if drafts:
                drafts[-1][0].break_after = "section"
            continue
        pieces: list[_Piece] = []
        for part, pause in _marked_parts(clean_inline(text, block.segments)):
            pieces += _pack(_pieces(_stripped(part), options), options)
            if pause is not None:  # after the last piece so far, in this block or before
                target = pieces[-1] if pieces else drafts[-1][0] if drafts else None
                if target is not None:
                    target.pause_for(pause)
        if not pieces:
            continue
        pieces[-1].text = _terminate(pieces[-1].text)
        if drafts and drafts[-1][0].break_after not in ("section", "pause"):
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
        if drafts[-1][0].break_after != "pause":
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
            pause_seconds=p.pause,
        )
        for i, (p, block) in enumerate(drafts)
    ]
