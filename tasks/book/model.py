"""A book as narrator reads it: its metadata, and its chapters in reading order.

EPUB and DOCX readers (epub.py, docx.py) both build a `Book`. Each chapter is HTML (the
project's HTML handling reads it, as it reads an .html chapter file), its title from the
table of contents, and where in the book it came from. Front and back matter (cover,
copyright, table of contents, index) are chapters too, marked with why they are skipped by
default, so a plan can show them and `--chapters` can still select one.
"""

import re
from dataclasses import dataclass, field

from gpu_worker.errors import InputError
from tasks.text.decode import html_to_text

# Titles that name front or back matter, whatever the book's markup says.
_MATTER_TITLES = {
    "cover": "cover",
    "front cover": "cover",
    "title page": "title page",
    "title": "title page",
    "half title": "title page",
    "copyright": "copyright page",
    "copyright page": "copyright page",
    "contents": "table of contents",
    "table of contents": "table of contents",
    "toc": "table of contents",
    "index": "index",
    "colophon": "colophon",
    "imprint": "copyright page",
    "list of illustrations": "list of illustrations",
    "list of figures": "list of illustrations",
    "list of tables": "list of tables",
}
_ALSO_BY = re.compile(r"^(?:also by|other books by|books by)\b", re.I)


def matter_from_title(title: str) -> str | None:
    """Why a chapter with this title is front or back matter, or None."""
    key = re.sub(r"[^a-z ]", "", title.casefold()).strip()
    key = re.sub(r" +", " ", key)
    if key in _MATTER_TITLES:
        return _MATTER_TITLES[key]
    return "list of other books" if _ALSO_BY.match(title.strip()) else None


def spoken_words(html: str) -> int:
    """How many words of `html` would be read aloud."""
    text = html_to_text(html).replace("\\", "")
    text = re.sub(r"^#+ ", "", text, flags=re.M)
    return len(re.findall(r"\w+(?:['’]\w+)*", text))


@dataclass
class BookChapter:
    number: int  # 1-based, in reading order, matter included
    title: str
    html: str
    location: str  # where in the book: "OEBPS/ch1.xhtml#c1", "paragraph 12"
    matter: str | None = None  # why it is skipped by default (e.g. "copyright page")
    words: int = 0

    def __post_init__(self) -> None:
        self.words = spoken_words(self.html)
        if self.matter is None and self.words == 0:
            self.matter = "no text"


@dataclass
class Book:
    source: str
    title: str
    authors: list[str] = field(default_factory=list)
    language: str | None = None
    description: str | None = None
    year: str | None = None
    publisher: str | None = None
    cover: bytes | None = None
    cover_type: str | None = None  # "image/jpeg" or "image/png"
    chapters: list[BookChapter] = field(default_factory=list)

    @property
    def author(self) -> str:
        return ", ".join(self.authors)

    def select(self, numbers: str | None = None, include_matter: bool = False) -> list[BookChapter]:
        """The chapters to narrate: those `numbers` names ("3-7,9"), or every chapter that is
        not front or back matter (all of them with `include_matter`). A chapter with no text
        is never narrated."""
        if numbers:
            wanted = parse_numbers(numbers, len(self.chapters))
            chosen = [c for c in self.chapters if c.number in wanted]
        else:
            chosen = [c for c in self.chapters if include_matter or c.matter is None]
        return [c for c in chosen if c.words > 0]


def parse_numbers(spec: str, count: int) -> set[int]:
    """Chapter numbers from "3-7,9" (1-based, inclusive ranges), each within 1..count."""
    numbers: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if not match:
            raise InputError(
                f"--chapters: {part!r} is not a chapter number or range; write e.g. 3-7,9"
            )
        first = int(match[1])
        last = int(match[2]) if match[2] else first
        if first > last:
            raise InputError(f"--chapters: {part!r} runs backwards; write {last}-{first}")
        if first < 1 or last > count:
            raise InputError(
                f"--chapters: {part!r} is outside the book's chapters 1-{count} "
                "(`narrator book plan` lists them)"
            )
        numbers.update(range(first, last + 1))
    return numbers
