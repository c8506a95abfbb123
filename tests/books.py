"""Books the tests build: EPUB 3 (nav document), EPUB 2 (NCX) and DOCX, each with a cover
page, a copyright page, a table of contents and three chapters, as publishers lay them out."""

import io
import zipfile
from pathlib import Path

import numpy as np

CHAPTERS = [
    ("Chapter One", ["The keeper climbed the stairs at dusk.", "He lit the great lamp."]),
    ("Chapter Two", ["The beam swept across the dark water."]),
    ("Chapter Three", ["At dawn the boat came home to the harbour."]),
]
TITLE, AUTHOR = "The Lighthouse Keeper", "Ada Lovelace"
DESCRIPTION = "A keeper, a lamp and a long night."


def cover_png() -> bytes:
    """A small real PNG (soundfile cannot write images; PyAV can)."""
    import av

    out = io.BytesIO()
    with av.open(out, "w", format="image2pipe") as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "rgb24"
        frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 200, np.uint8), format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def _xhtml(title: str, body: str, epub_type: str | None = None) -> str:
    kind = f' epub:type="{epub_type}"' if epub_type else ""
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html>\n'
        '<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops">'
        f"<head><title>{title}</title></head><body{kind}>{body}</body></html>"
    )


def chapter_body(title: str, paragraphs: list[str]) -> str:
    return f"<h1>{title}</h1>" + "".join(f"<p>{p}&nbsp;</p>" for p in paragraphs)


def epub(
    path: Path,
    version: int = 3,
    chapters: list[tuple[str, list[str]]] = CHAPTERS,
    extra: dict[str, bytes] | None = None,
) -> Path:
    """An EPUB `version` (2: NCX and guide; 3: nav with landmarks) at `path`."""
    files = {
        "OEBPS/cover.xhtml": _xhtml("Cover", '<img src="cover.png" alt="cover"/>', "cover"),
        "OEBPS/copyright.xhtml": _xhtml(
            "Copyright", "<p>Copyright 2026 Ada Lovelace. All rights reserved.</p>"
        ),
        "OEBPS/cover.png": cover_png(),
    }
    names = [f"ch{i}.xhtml" for i in range(1, len(chapters) + 1)]
    for name, (title, paragraphs) in zip(names, chapters, strict=True):
        files[f"OEBPS/{name}"] = _xhtml(title, chapter_body(title, paragraphs))
    toc_html = "".join(
        f'<li><a href="{n}">{t}</a></li>' for n, (t, _) in zip(names, chapters, strict=True)
    )
    spine = ["cover", "copyright", "toc", *[f"ch{i}" for i in range(1, len(chapters) + 1)]]
    manifest = [
        '<item id="cover" href="cover.xhtml" media-type="application/xhtml+xml"/>',
        '<item id="copyright" href="copyright.xhtml" media-type="application/xhtml+xml"/>',
        *(
            f'<item id="ch{i}" href="{n}" media-type="application/xhtml+xml"/>'
            for i, n in enumerate(names, 1)
        ),
    ]
    if version == 3:
        files["OEBPS/toc.xhtml"] = _xhtml(
            "Contents",
            f'<nav epub:type="toc"><h1>Contents</h1><ol>{toc_html}</ol></nav>'
            '<nav epub:type="landmarks"><ol>'
            '<li><a epub:type="cover" href="cover.xhtml">Cover</a></li>'
            '<li><a epub:type="copyright-page" href="copyright.xhtml">Copyright</a></li>'
            '<li><a epub:type="bodymatter" href="ch1.xhtml">Start</a></li></ol></nav>',
        )
        manifest += [
            '<item id="toc" href="toc.xhtml" media-type="application/xhtml+xml" properties="nav"/>',
            '<item id="img" href="cover.png" media-type="image/png" properties="cover-image"/>',
        ]
        cover_meta, spine_attr, guide = "", "", ""
    else:
        files["OEBPS/toc.xhtml"] = _xhtml("Contents", f"<h1>Contents</h1><ul>{toc_html}</ul>")
        points = "".join(
            f'<navPoint id="p{i}" playOrder="{i}"><navLabel><text>{t}</text></navLabel>'
            f'<content src="{n}"/></navPoint>'
            for i, (n, (t, _)) in enumerate(zip(names, chapters, strict=True), 1)
        )
        files["OEBPS/toc.ncx"] = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1">'
            f"<docTitle><text>{TITLE}</text></docTitle><navMap>{points}</navMap></ncx>"
        )
        manifest += [
            '<item id="toc" href="toc.xhtml" media-type="application/xhtml+xml"/>',
            '<item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>',
            '<item id="img" href="cover.png" media-type="image/png"/>',
        ]
        cover_meta = '<meta name="cover" content="img"/>'
        spine_attr = ' toc="ncx"'
        guide = (
            '<guide><reference type="cover" href="cover.xhtml" title="Cover"/>'
            '<reference type="copyright-page" href="copyright.xhtml" title="Copyright"/>'
            '<reference type="toc" href="toc.xhtml" title="Contents"/></guide>'
        )
    files["OEBPS/content.opf"] = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<package xmlns="http://www.idpf.org/2007/opf" version="{version}.0" '
        'unique-identifier="id"><metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f'<dc:identifier id="id">urn:uuid:1</dc:identifier><dc:title>{TITLE}</dc:title>'
        f"<dc:creator>{AUTHOR}</dc:creator><dc:language>en</dc:language>"
        f"<dc:description>&lt;p&gt;{DESCRIPTION}&lt;/p&gt;</dc:description>"
        f"<dc:date>2026-03-01</dc:date>{cover_meta}</metadata>"
        f"<manifest>{''.join(manifest)}</manifest>"
        f"<spine{spine_attr}>"
        + "".join(f'<itemref idref="{s}"/>' for s in spine)
        + f"</spine>{guide}</package>"
    )
    files.update(extra or {})
    write_zip(path, files)
    return path


def write_zip(path: Path, files: dict[str, str | bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "application/epub+zip", zipfile.ZIP_STORED)
        archive.writestr(
            "META-INF/container.xml",
            '<?xml version="1.0"?><container version="1.0" '
            'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
            '<rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
            "</rootfiles></container>",
        )
        for name, data in files.items():
            archive.writestr(name, data, zipfile.ZIP_DEFLATED)


def docx(path: Path, chapters: list[tuple[str, list[str]]] = CHAPTERS) -> Path:
    """A Word document: title page with a cover picture, copyright, Word's table of
    contents, then a Heading 1 per chapter."""
    import docx as python_docx
    from docx.enum.style import WD_STYLE_TYPE

    document = python_docx.Document()
    for style in ("TOC Heading", "TOC 1"):  # Word's own; python-docx's template lacks them
        if style not in [s.name for s in document.styles]:
            document.styles.add_style(style, WD_STYLE_TYPE.PARAGRAPH)
    document.core_properties.title = TITLE
    document.core_properties.author = AUTHOR
    document.core_properties.comments = DESCRIPTION
    document.add_picture(io.BytesIO(cover_png()))
    document.add_paragraph(TITLE, style="Title")
    document.add_paragraph("Copyright 2026 Ada Lovelace. All rights reserved.")
    document.add_paragraph("Contents", style="TOC Heading")
    for title, _ in chapters:
        document.add_paragraph(title, style="TOC 1")
    for title, paragraphs in chapters:
        document.add_heading(title, level=1)
        for paragraph in paragraphs:
            document.add_paragraph(paragraph)
    document.save(str(path))
    return path
