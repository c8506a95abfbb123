"""DOCX into a `Book` (python-docx): a chapter starts at each Heading 1.

Paragraphs become HTML (`<h2>`... for Heading 2-6, `<li>` for list styles, `<p>` otherwise),
tables rows of cells, so chapters go through the same block handling as HTML input. Word's
own table of contents (the "TOC n" paragraph styles) is dropped. What comes before the
first Heading 1 is front matter (skipped by default); a heading that names matter
("Contents", "Copyright") marks its chapter as matter. The title, author, language and
description come from the document's core properties (its creation date is not a
publication year); the cover is the first picture of the front matter, if any.
"""

import html
import io
import re
from typing import Any

from gpu_worker.errors import InputError
from tasks.book.model import Book, BookChapter, matter_from_title

_HEADING_1 = re.compile(r"(?i)heading ?1")  # "Heading 1", and "heading1" from other tools
_BLIP = "{http://schemas.openxmlformats.org/drawingml/2006/main}blip"
_EMBED = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}embed"


def read_docx(data: bytes, name: str) -> Book:
    """The book in `data` (a .docx file named `name`), or an InputError saying why not."""
    import docx

    try:
        document: Any = docx.Document(io.BytesIO(data))
    except Exception as e:  # an untrusted file: python-docx and lxml raise many kinds
        raise InputError(
            f"{name}: not a readable Word document ({type(e).__name__}: {e}); "
            "save it again as .docx"
        ) from None
    props = document.core_properties
    book = Book(
        source=name,
        title=(props.title or "").strip() or re.sub(r"\.docx$", "", name.rsplit("/", 1)[-1]),
        authors=[a.strip() for a in re.split(r"[;,]", props.author or "") if a.strip()],
        language=(props.language or "").strip() or None,
        description=(props.comments or props.subject or "").strip() or None,
    )
    front: list[str] = []
    chapters: list[tuple[str, list[str], str, str | None]] = []
    for number, block in enumerate(document.iter_inner_content(), 1):
        if hasattr(block, "rows"):
            html_block = _table(block)
        else:
            style = (block.style.name if block.style is not None else "") or ""
            text = html.escape(block.text.strip())
            if style.startswith("TOC") or (not text and not _picture(block)):
                continue
            if _HEADING_1.fullmatch(style) and text:
                title = block.text.strip()
                chapters.append((title, [f"<h1>{text}</h1>"], f"paragraph {number}", None))
                continue
            if not chapters and book.cover is None and (image := _picture(block)):
                book.cover, book.cover_type = _image(document, image)
            html_block = _paragraph(style, text)
        (chapters[-1][1] if chapters else front).append(html_block)
    items: list[tuple[str, list[str], str, str | None]] = []
    if front:
        items.append(("Front matter", front, "before the first Heading 1", "front matter"))
    items += [(t, parts, where, matter_from_title(t)) for t, parts, where, _ in chapters]
    book.chapters = [
        BookChapter(n, title, "\n".join(parts), where, matter)
        for n, (title, parts, where, matter) in enumerate(items, 1)
    ]
    return book


def _paragraph(style: str, text: str) -> str:
    if not text:
        return ""
    heading = re.fullmatch(r"(?i)heading ?([2-6])", style)
    if heading:
        return f"<h{heading[1]}>{text}</h{heading[1]}>"
    if style.startswith("List"):
        return f"<ul><li>{text}</li></ul>"
    return f"<p>{text}</p>"


def _table(table: Any) -> str:
    rows = [
        "<tr>" + "".join(f"<td>{html.escape(c.text.strip())}</td>" for c in row.cells) + "</tr>"
        for row in table.rows
    ]
    return "<table>" + "".join(rows) + "</table>"


def _picture(paragraph: Any) -> str | None:
    """The relationship id of the first picture in `paragraph`."""
    for blip in paragraph._element.iter(_BLIP):
        if blip.get(_EMBED):
            return str(blip.get(_EMBED))
    return None


def _image(document: Any, rel_id: str) -> tuple[bytes | None, str | None]:
    part = document.part.related_parts.get(rel_id)
    kind = getattr(part, "content_type", "")
    if kind in ("image/jpeg", "image/png"):
        return part.blob, kind
    return None, None
