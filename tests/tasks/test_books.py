"""Books read into chapters: the table of contents followed, matter recognised and skipped,
the metadata and cover found, and a malformed or DRM-protected book refused in one line."""

import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from flows.cli import app
from gpu_worker.errors import InputError
from tasks.book import read_book
from tasks.book.acx import measure, write_mp3
from tasks.book.docx import read_docx
from tasks.encode import encode
from tests import books

TITLES = [title for title, _ in books.CHAPTERS]


def build(kind: str, folder: Path) -> Path:
    if kind == "docx":
        return books.docx(folder / "keeper.docx")
    return books.epub(folder / f"keeper-{kind}.epub", 3 if kind == "epub3" else 2)


@pytest.mark.parametrize("kind", ["epub3", "epub2", "docx"])
def test_each_kind_of_book_gives_exactly_its_three_chapters(tmp_path: Path, kind: str) -> None:
    book = read_book(str(build(kind, tmp_path)))
    chosen = book.select()
    assert [c.title for c in chosen] == TITLES
    assert "The keeper climbed the stairs at dusk." in chosen[0].html
    assert [c.words for c in chosen] == [14, 9, 11]  # heading and sentences, nothing else
    assert (book.title, book.author) == (books.TITLE, books.AUTHOR)
    assert book.description == books.DESCRIPTION  # the EPUB's HTML markup taken out
    assert (book.cover, book.cover_type) == (books.cover_png(), "image/png")
    skipped = [c for c in book.chapters if c not in chosen]
    if kind == "docx":
        assert [(c.title, c.matter) for c in skipped] == [("Front matter", "front matter")]
    else:
        assert [(c.title, c.matter) for c in skipped] == [
            ("Cover", "cover"),
            ("Copyright", "copyright page"),
            ("Contents", "table of contents"),
        ]
        assert book.year == "2026" and book.language == "en"
    # matter can still be chosen, by number or all at once
    assert [c.title for c in book.select(include_matter=True)][-3:] == TITLES
    assert [c.number for c in book.select(f"{chosen[1].number}-{chosen[2].number}")] == [
        chosen[1].number,
        chosen[2].number,
    ]


def test_chapters_are_cut_where_the_contents_point_not_where_files_end(tmp_path: Path) -> None:
    """Two chapters in one file (cut at their fragments), a chapter split over two files
    (the second continues it), a part holding chapters (each its own), and sections
    listed under their chapter in its own file (not chapters)."""
    part = books._xhtml("Part One", "<h1>Part One</h1><p>The early years.</p>")
    both = books._xhtml(
        "Two chapters",
        '<section id="c1"><h1>Chapter One</h1><p>The keeper climbed the stairs.</p>'
        '<h2 id="s1">Dusk</h2><p>He lit the lamp.</p></section>'
        '<section id="c2"><h1>Chapter Two</h1><p>The beam swept the water.</p></section>',
    )
    more = books._xhtml("", "<p>The water was calm all night.</p>")
    nav = books._xhtml(
        "Contents",
        '<nav epub:type="toc"><ol><li><a href="part.xhtml">Part One</a><ol>'
        '<li><a href="both.xhtml#c1">Chapter One</a>'
        '<ol><li><a href="both.xhtml#s1">Dusk</a></li></ol></li>'
        '<li><a href="both.xhtml#c2">Chapter Two</a></li></ol></li></ol></nav>',
    )
    opf = (
        '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
        '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>Parts</dc:title>'
        "</metadata><manifest>"
        '<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>'
        '<item id="part" href="part.xhtml" media-type="application/xhtml+xml"/>'
        '<item id="both" href="both.xhtml" media-type="application/xhtml+xml"/>'
        '<item id="more" href="more.xhtml" media-type="application/xhtml+xml"/>'
        '</manifest><spine><itemref idref="part"/><itemref idref="both"/>'
        '<itemref idref="more"/></spine></package>'
    )
    path = tmp_path / "parts.epub"
    books.write_zip(
        path,
        {
            "OEBPS/content.opf": opf,
            "OEBPS/nav.xhtml": nav,
            "OEBPS/part.xhtml": part,
            "OEBPS/both.xhtml": both,
            "OEBPS/more.xhtml": more,
        },
    )
    book = read_book(str(path))
    assert [(c.title, c.location) for c in book.select()] == [
        ("Part One", "OEBPS/part.xhtml"),
        ("Chapter One", "OEBPS/both.xhtml#c1"),
        ("Chapter Two", "OEBPS/both.xhtml#c2"),
    ]
    one, two = book.select()[1:]
    assert "He lit the lamp." in one.html and "beam" not in one.html
    assert "The beam swept the water." in two.html and "calm all night" in two.html
    assert [c.title for c in book.chapters] == ["Part One", "Chapter One", "Chapter Two"]


def test_a_book_without_contents_has_a_chapter_per_document(tmp_path: Path) -> None:
    """No nav and no NCX: each spine document is a chapter, titled by its heading; a page
    repeating the book's title is its title page; a non-linear document is skipped."""
    docs = {
        "title": books._xhtml("", "<h1>Parts</h1><p>A novel.</p>"),
        "one": books._xhtml("", "<h1>Chapter One</h1><p>The keeper climbed the stairs.</p>"),
        "notes": books._xhtml("", "<h1>Notes</h1><p>A note.</p>"),
        "two": books._xhtml("", "<h1>Chapter Two</h1><p>The beam swept the water.</p>"),
    }
    opf = (
        '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="2.0">'
        '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>Parts</dc:title>'
        "</metadata><manifest>"
        + "".join(
            f'<item id="{d}" href="{d}.xhtml" media-type="application/xhtml+xml"/>' for d in docs
        )
        + '</manifest><spine><itemref idref="title"/><itemref idref="one"/>'
        '<itemref idref="notes" linear="no"/><itemref idref="two"/></spine></package>'
    )
    path = tmp_path / "plain.epub"
    files = {f"OEBPS/{d}.xhtml": html for d, html in docs.items()}
    books.write_zip(path, {"OEBPS/content.opf": opf, **files})
    book = read_book(str(path))
    assert [(c.title, c.matter) for c in book.chapters] == [
        ("Parts", "title page"),
        ("Chapter One", None),
        ("Notes", "outside the reading order"),
        ("Chapter Two", None),
    ]


def test_a_carelessly_made_epub_is_still_read(tmp_path: Path) -> None:
    """Seen in the wild: a package document without the OPF namespace, manifest names in
    another case than the archive's, a chapter in windows-1252 that says so, an NCX
    label with line breaks, and a table-of-contents entry listed twice."""
    chapter = (
        '<?xml version="1.0" encoding="windows-1252"?><html><body><h1>Caf\xe9</h1>'
        "<p>The keeper\x92s lamp was lit.</p></body></html>"
    ).encode("latin-1")
    opf = (
        '<?xml version="1.0"?><package version="2.0"><metadata>'
        "<title>Careless</title></metadata><manifest>"
        '<item id="ch" href="Text/Chapter1.xhtml" media-type="application/xhtml+xml"/>'
        '<item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>'
        '</manifest><spine toc="ncx"><itemref idref="ch"/></spine></package>'
    )
    point = (
        "<navPoint><navLabel><text>Chapter\n  One</text></navLabel>"
        '<content src="Text/Chapter1.xhtml"/></navPoint>'
    )
    ncx = f'<ncx xmlns="http://www.daisy.org/z3986/2005/ncx/"><navMap>{point * 2}</navMap></ncx>'
    path = tmp_path / "careless.epub"
    books.write_zip(
        path, {"OEBPS/content.opf": opf, "OEBPS/toc.ncx": ncx, "OEBPS/text/chapter1.xhtml": chapter}
    )
    book = read_book(str(path))
    assert book.title == "Careless"
    (only,) = book.select()
    assert only.title == "Chapter One" and "The keeper’s lamp was lit." in only.html


def _refusal(path: Path) -> str:
    with pytest.raises(InputError) as refused:
        read_book(str(path))
    message = str(refused.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


def test_a_malformed_book_fails_with_one_line_saying_why(tmp_path: Path) -> None:
    good = books.epub(tmp_path / "good.epub").read_bytes()
    cut = tmp_path / "cut.epub"
    cut.write_bytes(good[: len(good) // 2])
    assert "not a ZIP archive" in _refusal(cut)

    def without(name: str, replace: bytes | None = None) -> Path:
        path = tmp_path / f"no-{name.replace('/', '-')}.epub"
        with zipfile.ZipFile(tmp_path / "good.epub") as source, zipfile.ZipFile(path, "w") as out:
            for item in source.infolist():
                if item.filename != name:
                    out.writestr(item, source.read(item))
                elif replace is not None:
                    out.writestr(item, replace)
        return path

    assert "META-INF/container.xml is missing" in _refusal(without("META-INF/container.xml"))
    assert "OEBPS/content.opf is not well-formed XML" in _refusal(
        without("OEBPS/content.opf", b"<package><metadata>")
    )
    assert "the spine's OEBPS/ch2.xhtml is missing" in _refusal(without("OEBPS/ch2.xhtml"))
    assert "neither UTF-8 nor UTF-16" in _refusal(without("OEBPS/ch1.xhtml", b"\xff\xfe\xff" * 3))
    corrupt = bytearray(good)
    at = good.index(b"OEBPS/ch1.xhtml") + 60  # inside that member's compressed data
    corrupt[at : at + 8] = b"\x00" * 8
    (tmp_path / "crc.epub").write_bytes(bytes(corrupt))
    assert "malformed EPUB" in _refusal(tmp_path / "crc.epub")
    (tmp_path / "bad.docx").write_bytes(b"PK\x03\x04 not really")
    assert "not a readable Word document" in _refusal(tmp_path / "bad.docx")
    (tmp_path / "book.pdf").write_bytes(b"%PDF-1.7")
    assert "narrator reads .epub and .docx books" in _refusal(tmp_path / "book.pdf")


ENCRYPTION = """<?xml version="1.0"?>
<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container"
  xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData>
  <enc:EncryptionMethod Algorithm="{algorithm}"/>
  <enc:CipherData><enc:CipherReference URI="OEBPS/{target}"/></enc:CipherData>
</enc:EncryptedData></encryption>"""


def test_drm_is_refused_but_font_obfuscation_is_not(tmp_path: Path) -> None:
    drm = ENCRYPTION.format(
        algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc", target="ch1.xhtml"
    )
    locked = books.epub(tmp_path / "locked.epub", extra={"META-INF/encryption.xml": drm})
    assert "DRM-protected (META-INF/encryption.xml encrypts 1 file(s))" in _refusal(locked)
    adobe = books.epub(tmp_path / "adept.epub", extra={"META-INF/rights.xml": "<rights/>"})
    assert "DRM-protected (META-INF/rights.xml)" in _refusal(adobe)
    fonts = ENCRYPTION.format(algorithm="http://www.idpf.org/2008/embedding", target="font.otf")
    fine = books.epub(tmp_path / "fonts.epub", extra={"META-INF/encryption.xml": fonts})
    assert [c.title for c in read_book(str(fine)).select()] == TITLES


@pytest.mark.parametrize("kind", ["epub3", "epub2", "docx"])
def test_book_plan_prints_the_chapters_their_cost_and_what_is_skipped(
    tmp_path: Path, kind: str
) -> None:
    result = CliRunner().invoke(
        app, ["book", "plan", str(build(kind, tmp_path))], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "Chapter" in line]
    assert [r.split("│")[2].strip() for r in rows] == TITLES
    assert "3 chapters" in result.output and "$" in rows[0]
    skipped = ["1  Front matter  (front matter"]
    if kind != "docx":
        skipped = ["1  Cover  (cover", "2  Copyright  (copyright page", "3  Contents"]
    for line in skipped:
        assert line in result.output
    if kind != "epub3":
        return
    book = tmp_path / "keeper-epub3.epub"
    drm = ENCRYPTION.format(algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc", target="x")
    locked = books.epub(tmp_path / "locked.epub", extra={"META-INF/encryption.xml": drm})
    refused = CliRunner().invoke(app, ["book", "plan", str(locked)], terminal_width=400)
    assert refused.exit_code == 1
    assert refused.output.count("\n") == 1 and "DRM-protected" in refused.output
    picked = CliRunner().invoke(app, ["book", "plan", str(book), "--chapters", "5-6,9"])
    assert picked.exit_code == 1
    assert "--chapters: '9' is outside the book's chapters 1-6" in picked.output


def test_a_word_document_keeps_its_headings_lists_and_tables(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("Chapter One", level=1)
    document.add_heading("The stairs", level=2)
    document.add_paragraph("Three things to bring:", style="Normal")
    document.add_paragraph("a lamp", style="List Bullet")
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "oil", "two gallons"
    document.add_heading("Copyright", level=1)
    document.add_paragraph("All rights reserved.")
    path = tmp_path / "notes.docx"
    document.save(str(path))
    one, rights = read_docx(path.read_bytes(), str(path)).chapters
    assert "<h2>The stairs</h2>" in one.html and "<li>a lamp</li>" in one.html
    assert "<td>oil</td><td>two gallons</td>" in one.html
    assert (rights.title, rights.matter) == ("Copyright", "copyright page")


def test_the_acx_checks_catch_a_file_that_fails_them(tmp_path: Path) -> None:
    """A loud tone with no quiet moment: RMS too high, peaks over -3 dB, no noise floor."""
    rate = 44100
    t = np.arange(rate * 3) / rate
    tone = (0.9 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    sf.write(str(tmp_path / "tone.wav"), tone, rate)
    mp3 = encode(tmp_path / "tone.wav", tmp_path / "tone.mp3", "mp3", "tone", [])
    check = measure(mp3)
    assert not (check.acx.rms_ok or check.acx.peak_ok or check.acx.noise_floor_ok)
    assert len(check.problems) == 3 and check.duration_ok
    # the same tone, mastered as the package masters a chapter, passes
    fixed = write_mp3(tone, rate, tmp_path / "mastered.mp3", "tone", 0)
    assert fixed.acx.rms_ok and fixed.acx.peak_ok and fixed.acx.noise_floor_ok, fixed


def test_a_locked_or_oversized_member_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neighbours of the malformed book: a password-protected member, a member bigger than
    any book needs (a ZIP bomb's shape), Apple's DRM marker."""
    from tasks.book import epub

    good = books.epub(tmp_path / "good.epub").read_bytes()
    locked = bytearray(good)
    name = b"OEBPS/ch1.xhtml"
    entry = locked.index(b"PK\x01\x02")
    while locked[entry + 46 : entry + 46 + len(name)] != name:  # its central directory entry
        entry = locked.index(b"PK\x01\x02", entry + 4)
    locked[entry + 8] |= 0x01  # "encrypted"
    (tmp_path / "locked.epub").write_bytes(bytes(locked))
    assert "OEBPS/ch1.xhtml cannot be extracted" in _refusal(tmp_path / "locked.epub")

    monkeypatch.setattr(epub, "MAX_MEMBER_BYTES", 300)
    assert "bytes, over 300" in _refusal(books.epub(tmp_path / "big.epub"))
    monkeypatch.undo()
    apple = books.epub(tmp_path / "apple.epub", extra={"META-INF/sinf.xml": "<sinf/>"})
    assert "DRM-protected (META-INF/sinf.xml)" in _refusal(apple)
