"""Books in, books out: an EPUB or DOCX read into chapters (model.py, epub.py, docx.py),
and the narrated chapters assembled into one M4B and an ACX package (audiobook.py, acx.py)."""

from gpu_worker.errors import InputError
from tasks import storage
from tasks.book.model import Book, BookChapter, parse_numbers

BOOK_SUFFIXES = (".epub", ".docx")
MAX_BOOK_BYTES = 500_000_000


def is_book(location: str) -> bool:
    return location.lower().endswith(BOOK_SUFFIXES)


def read_book(location: str, endpoint_url: str | None = None) -> Book:
    """The book at `location` (a path or s3:// URI, .epub or .docx)."""
    from tasks.book.docx import read_docx
    from tasks.book.epub import read_epub

    if not is_book(location):
        raise InputError(f"{location}: not a book; narrator reads .epub and .docx books")
    found = storage.size(location, endpoint_url)
    if found > MAX_BOOK_BYTES:
        raise InputError(f"{location}: {found:,} bytes is over the {MAX_BOOK_BYTES:,}-byte limit")
    data = storage.read_bytes(location, endpoint_url)
    reader = read_epub if location.lower().endswith(".epub") else read_docx
    return reader(data, location)


__all__ = ["BOOK_SUFFIXES", "Book", "BookChapter", "is_book", "parse_numbers", "read_book"]
