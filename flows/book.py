"""narrate_book: an EPUB or DOCX narrated chapter by chapter, delivered as one M4B (and,
with `acx`, an ACX-ready package).

The flow sequences four steps. The book is read (tasks/book) and its chosen chapters are
written to `out_dir`/text/ as HTML files, one per chapter (rewritten only when their text
changed). The nightly batch (flows/batch.py) narrates them, as subflows, into
`out_dir`/<NN-title>/: a chapter already current is skipped, an edited one regenerates
only its changed chunks (the chunk cache), a failed one fails alone and is named, and then
the book is not assembled. The chapters' WAVs are joined into `out_dir`/<book>.m4b with a
marker per chapter, the cover and the tags (tasks/book/audiobook.py); book.json records
what went in, and each chapter's loudness (every chapter is levelled to the same target
by its own run; a spread over `LOUDNESS_SPREAD_LU` is warned about). An assembly whose
inputs (chapters' audio, tags, cover) are unchanged is not redone.
"""

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any
from typing import cast as typing_cast

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from pydantic import BaseModel, Field

from flows.batch import MAX_IN_FLIGHT, BatchResult, narrate_batch, reason
from flows.parameters import checked_flow
from flows.services import services
from gpu_worker.errors import InputError, PermanentError
from gpu_worker.redaction import CredentialFree
from gpu_worker.voices import write_atomic
from tasks.book import Book, BookChapter, read_book
from tasks.book.acx import package
from tasks.book.audiobook import BookTags, Part, write_audiobook
from tasks.cast import Cast
from tasks.encode import Marker
from tasks.options import NarrationOptions
from tasks.outputs import MANIFEST
from tasks.storage import is_s3, output_stem
from tasks.text.lexicon import Lexicon

TEXT_FOLDER = "text"
OPENING, CLOSING = "00-opening-credits", "zz-closing-credits"  # ACX's credits, as chapters
BOOK_RECORD = "book.json"
LOUDNESS_SPREAD_LU = 1.0  # chapters further apart than this are warned about
TITLE_CHARS = 60  # of a chapter's title in its file and folder names


class BookResult(BaseModel):
    audiobook: str = Field(description="The M4B of the whole book.")
    chapters: list[str] = Field(description="The chapters in the audiobook, by title.")
    batch: BatchResult = Field(description="Which chapters were narrated, skipped, failed.")
    assembled: bool = Field(description="Whether the M4B was written in this run.")
    acx_report: str | None = Field(None, description="The ACX package's report, if made.")


def chapter_name(chapter: BookChapter, count: int) -> str:
    """The chapter's file and folder name: its number, padded so names sort in reading
    order, and its title."""
    width = max(2, len(str(count)))
    return output_stem(f"{chapter.number:0{width}d} {chapter.title[:TITLE_CHARS]}")


def credits(book: Book, tags: BookTags) -> tuple[str, str]:
    """ACX's opening and closing credits, as chapter texts."""
    title, author = tags.title or book.title, tags.author or book.author
    names = f"Written by {author}." if author else ""
    if tags.narrator:
        names += f" Narrated by {tags.narrator}."
    return (
        f"<p>{title}.</p><p>{names}</p>",
        f"<p>This has been {title}.</p><p>{names}</p><p>The end.</p>",
    )


@task(name="read-book", cache_policy=NONE)
def read_book_task(book: str, endpoint_url: str | None) -> Book:
    """The book's metadata and chapters (tasks/book)."""
    read = read_book(book, endpoint_url)
    get_run_logger().info(
        "%s: %d chapters in the table of contents, %d of them front or back matter",
        read.title,
        len(read.chapters),
        sum(c.matter is not None for c in read.chapters),
    )
    return read


@task(name="write-chapter-texts", cache_policy=NONE)
def write_texts(texts: dict[str, str], folder: Path) -> None:
    """Each chapter's HTML as `folder`/<name>.html, written only when it changed (so an
    unchanged chapter stays current), and the folder's other chapters removed (so the
    batch narrates exactly this selection)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, html in texts.items():
        path = folder / f"{name}.html"
        if not path.is_file() or path.read_text(encoding="utf-8") != html:
            write_atomic(path, html.encode())
    for stale in folder.glob("*.html"):
        if stale.stem not in texts:
            stale.unlink()


@task(name="assemble-audiobook", cache_policy=NONE)
def assemble(
    parts: list[Part], out: Path, tags: BookTags, book: Book, record: Path
) -> tuple[list[Marker], bool]:
    """The M4B, unless book.json says it was made from these very inputs; its markers and
    whether it was written now."""
    inputs = {
        "chapters": [{"title": p.title, "wav_sha256": p.wav_sha256} for p in parts],
        "tags": tags.model_dump(),
        "cover_sha256": hashlib.sha256(book.cover).hexdigest() if book.cover else None,
    }
    if out.is_file() and record.is_file():
        previous = json.loads(record.read_text())
        if previous.get("inputs") == inputs:
            return [Marker(**m) for m in previous["markers"]], False
    markers = write_audiobook(parts, out, tags, book.cover, book.cover_type)
    levels = [p.lufs for p in parts if p.lufs is not None]
    spread = round(max(levels) - min(levels), 2) if levels else None
    if spread is not None and spread > LOUDNESS_SPREAD_LU:
        get_run_logger().warning(
            "the chapters' loudness differs by %.1f LU (book.json lists each)", spread
        )
    body = {
        "book": book.source,
        "audiobook": out.name,
        "inputs": inputs,
        "markers": [vars(m) for m in markers],
        "chapters": [
            {
                "title": p.title,
                "location": p.location,
                "start": m.start,
                "end": m.end,
                "integrated_lufs": p.lufs,
            }
            for p, m in zip(parts, markers, strict=True)
        ],
        "loudness_spread_lu": spread,
    }
    write_atomic(record, (json.dumps(body, indent=2) + "\n").encode())
    return markers, True


def book_tags(book: Book, tags: BookTags) -> BookTags:
    """`tags` with what it leaves unset taken from the book's metadata."""
    return tags.model_copy(
        update={
            "title": tags.title or book.title,
            "author": tags.author or book.author or None,
            "year": tags.year or book.year,
            "description": tags.description or book.description,
        }
    )


@checked_flow(name="narrate-book")
def narrate_book(
    book: str,
    out_dir: str,
    chapters: str | None = None,
    include_matter: bool = False,
    voice: CredentialFree | None = None,
    options: NarrationOptions = NarrationOptions(),  # noqa: B008 - frozen, shown in the UI
    max_in_flight: Annotated[int, Field(ge=1, le=MAX_IN_FLIGHT)] = 2,
    lexicon: Lexicon | None = None,
    cast: Cast | None = None,
    tags: BookTags = BookTags(),  # noqa: B008 - frozen, shown in the UI
    acx: bool = False,
) -> BookResult:
    """Narrate a book (EPUB or DOCX) into one M4B with a marker per chapter.

    Args:
        book: The .epub or .docx file: a path on the worker or an s3://bucket/key URI.
        out_dir: Folder for the chapters' outputs, the M4B and (with acx) the ACX package.
        chapters: Which chapters, by number as `narrator book plan` lists them ("3-7,9").
            Empty: every chapter that is not front or back matter.
        include_matter: Also narrate the cover, copyright, contents and index pages.
        voice: Built-in or library voice name, or reference clip, for every chapter.
        options: Narration options, for every chapter.
        max_in_flight: Chapters narrated at once.
        lexicon: How to say names and rare words, for every chapter.
        cast: For dialogue: the narrator's and each speaker's voice.
        tags: The audiobook's tags beyond the book's own metadata (narrator, series...).
        acx: Also make the ACX package in out_dir/acx/.
    """
    logger = get_run_logger()
    settings = services().settings
    if is_s3(out_dir):
        raise InputError(
            f"{out_dir}: a book is assembled in a folder; give a local --out "
            "(copy the results to S3 afterwards)"
        )
    read = read_book_task(book, settings.s3_endpoint_url)
    chosen = read.select(chapters, include_matter)
    skipped = [c for c in read.chapters if c not in chosen]
    for chapter in skipped:
        logger.info("skipping %d %s (%s)", chapter.number, chapter.title, chapter.matter)
    if not chosen:
        raise InputError(f"{book}: no chapters to narrate (`narrator book plan` lists them)")
    tags = book_tags(read, tags)
    names = {c.number: chapter_name(c, len(read.chapters)) for c in chosen}
    texts = {names[c.number]: c.html for c in chosen}
    if acx:
        texts[OPENING], texts[CLOSING] = credits(read, tags)
    out = Path(out_dir)
    write_texts(texts, out / TEXT_FOLDER)
    state = narrate_batch(
        str(out / TEXT_FOLDER),
        out_dir,
        "*.html",
        voice,
        options,
        max_in_flight,
        lexicon,
        cast,
        return_state=True,
    )
    if not state.is_completed():
        raise PermanentError(f"the book was not assembled: {reason(state)}")
    batch = typing_cast(BatchResult, state.result())
    parts = [part(c, out / names[c.number]) for c in chosen]
    audiobook = out / f"{output_stem(book)}.m4b"
    markers, assembled = assemble(parts, audiobook, tags, read, out / BOOK_RECORD)
    report = None
    if acx:
        opening, closing = (out / name / f"{name}.wav" for name in (OPENING, CLOSING))
        made = package([(p.title, p.wav) for p in parts], opening, closing, out / "acx")
        report = str(out / "acx" / "acx-report.json")
        if not made["passed"]:
            logger.warning("ACX checks: some files fail; see %s", report)
    create_markdown_artifact(
        _summary(read, markers, skipped, batch),
        key="book-summary",
        description=f"{read.title}: {len(chosen)} chapters",
    )
    return BookResult(
        audiobook=str(audiobook),
        chapters=[c.title for c in chosen],
        batch=batch,
        assembled=assembled,
        acx_report=report,
    )


def part(chapter: BookChapter, folder: Path) -> Part:
    """A narrated chapter as the audiobook takes it: its WAV with the sha256 its manifest
    records (no second read of the audio) and its loudness from its metadata.json."""
    wav = folder / f"{folder.name}.wav"
    manifest = json.loads((folder / MANIFEST).read_text())
    try:
        metadata = json.loads((folder / "metadata.json").read_text())
        lufs: float | None = float(metadata["audio"]["integrated_lufs"])
    except (OSError, ValueError, KeyError, TypeError):
        lufs = None
    return Part(chapter.title, wav, manifest["files"][wav.name]["sha256"], lufs, chapter.location)


def _summary(book: Book, markers: list[Marker], skipped: list[BookChapter], batch: Any) -> str:
    rows = [f"| {m.title} | {m.start / 60:.2f} | {(m.end - m.start) / 60:.2f} |" for m in markers]
    lines = [
        f"**{book.title}**{' by ' + book.author if book.author else ''}: {len(markers)} "
        f"chapters ({len(batch.narrated)} narrated now, {len(batch.skipped)} already current).",
        "",
        "| chapter | starts (min) | length (min) |",
        "|---|---:|---:|",
        *rows,
    ]
    if skipped:
        lines += ["", "Skipped: " + ", ".join(f"{c.title} ({c.matter})" for c in skipped) + "."]
    return "\n".join(lines)
