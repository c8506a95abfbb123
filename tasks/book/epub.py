"""EPUB 2 and 3 into a `Book`: chapters follow the spine, cut where the table of contents
(EPUB 3's nav document, else EPUB 2's NCX) points.

Read with zipfile and the standard library's XML and HTML parsers: the package document and
the NCX are XML; the nav document and the chapters are read as HTML, tolerantly (real books
carry `&nbsp;` and unclosed tags). Each member is read with a size limit (a ZIP bomb stops
there). A book whose content is encrypted (DRM) is refused: font obfuscation, which also
uses encryption.xml, is not DRM and is allowed.

Chapters: each table-of-contents entry starts one, in spine order, at its fragment if it
has one; an entry nested under one that points into the same file is a section, not a
chapter. A spine document no entry points into continues the chapter before it, unless it
is front or back matter or comes before the first entry: then it is an item of its own
(matter is skipped by default). A book without a table of contents has a chapter per
spine document. Matter is
recognised from the EPUB 3 landmarks, the EPUB 2 guide, `epub:type` on the document's body
or first section, and the title.
"""

import io
import posixpath
import re
import zipfile
import zlib
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import unquote, urldefrag
from xml.etree import ElementTree

from gpu_worker.errors import InputError
from tasks.book.model import Book, BookChapter, matter_from_title

MAX_MEMBER_BYTES = 64 * 1024 * 1024  # one file inside the book, decompressed

_FONT_OBFUSCATION = {"http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC"}
# epub:type (EPUB 3) and guide types (EPUB 2) of matter, and how a plan names them
_MATTER_TYPES = {
    "cover": "cover",
    "titlepage": "title page",
    "title-page": "title page",
    "halftitlepage": "title page",
    "copyright-page": "copyright page",
    "copyright": "copyright page",
    "imprint": "copyright page",
    "toc": "table of contents",
    "index": "index",
    "loi": "list of illustrations",
    "lot": "list of tables",
    "colophon": "colophon",
    "landmarks": "table of contents",
    "page-list": "table of contents",
}
_DECLARED = re.compile(rb"""(?:encoding|charset)\s*=\s*["']?([A-Za-z0-9_.:-]+)""")
_DOCUMENT_TYPES = ("application/xhtml+xml", "text/html", "application/x-dtbook+xml")


@dataclass
class _Entry:
    title: str
    path: str
    fragment: str


def read_epub(data: bytes, name: str) -> Book:
    """The book in `data` (an EPUB file named `name`), or an InputError saying why not."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise InputError(
            f"{name}: not an EPUB (not a ZIP archive); is the file complete?"
        ) from None
    with archive:
        return _Reader(archive, name).book()


class _Reader:
    def __init__(self, archive: zipfile.ZipFile, name: str) -> None:
        self.archive, self.name = archive, name
        self.members = {info.filename for info in archive.infolist()}
        # books made on Windows and macOS often differ in case from their own manifests
        self.folded = {name.casefold(): name for name in self.members}

    def bad(self, why: str) -> InputError:
        return InputError(f"{self.name}: malformed EPUB: {why}")

    def has(self, path: str) -> bool:
        return path in self.members or path.casefold() in self.folded

    def read(self, path: str) -> bytes:
        if not self.has(path):
            raise self.bad(f"{path} is missing")
        info = self.archive.getinfo(path if path in self.members else self.folded[path.casefold()])
        if info.file_size > MAX_MEMBER_BYTES:
            raise self.bad(f"{path} is {info.file_size:,} bytes, over {MAX_MEMBER_BYTES:,}")
        try:
            with self.archive.open(info) as member:
                data = member.read(MAX_MEMBER_BYTES + 1)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError) as e:
            # a CRC mismatch, a cut or corrupt stream, a password-protected member
            raise self.bad(f"{path} cannot be extracted ({e})") from None
        except NotImplementedError as e:  # a compression method zipfile lacks
            raise self.bad(f"{path}: {e}") from None
        if len(data) > MAX_MEMBER_BYTES:  # its header understated its size
            raise self.bad(f"{path} is over {MAX_MEMBER_BYTES:,} bytes")
        return data

    def xml(self, path: str) -> ElementTree.Element:
        """The XML document at `path`, every name in it without its namespace (books in the
        wild use the OPF namespace, a prefix for it, or none)."""
        try:
            root = ElementTree.fromstring(self.read(path))
        except ElementTree.ParseError as e:
            raise self.bad(f"{path} is not well-formed XML ({e})") from None
        for element in root.iter():
            if isinstance(element.tag, str):
                element.tag = element.tag.rsplit("}", 1)[-1]
        return root

    def text(self, path: str) -> str:
        """A document's text: UTF-8 or UTF-16, else the encoding it declares (an XML
        declaration or a meta charset, e.g. windows-1252 in older books)."""
        data = self.read(path)
        declared = _DECLARED.search(data[:1024])
        encodings = ["utf-8-sig", "utf-16"]
        if declared:
            encodings.append(declared[1].decode("ascii"))
        for encoding in encodings:
            try:
                return data.decode(encoding)
            except (UnicodeDecodeError, LookupError):
                continue
        raise self.bad(f"{path} is neither UTF-8 nor UTF-16 text, nor in an encoding it declares")

    def refuse_drm(self) -> None:
        if "META-INF/rights.xml" in self.members or "META-INF/sinf.xml" in self.members:
            raise InputError(
                f"{self.name}: the book is DRM-protected (META-INF/"
                f"{'rights' if 'META-INF/rights.xml' in self.members else 'sinf'}.xml); "
                "narrator reads DRM-free books only: use a DRM-free copy"
            )
        if "META-INF/encryption.xml" not in self.members:
            return
        encrypted = [
            data
            for data in self.xml("META-INF/encryption.xml").iter("EncryptedData")
            if _algorithm(data) not in _FONT_OBFUSCATION
        ]
        if encrypted:
            raise InputError(
                f"{self.name}: the book is DRM-protected (META-INF/encryption.xml encrypts "
                f"{len(encrypted)} file(s)); narrator reads DRM-free books only: use a "
                "DRM-free copy"
            )

    def book(self) -> Book:
        self.refuse_drm()
        rootfile = self.xml("META-INF/container.xml").find(".//rootfile")
        if rootfile is None or not rootfile.get("full-path"):
            raise self.bad("META-INF/container.xml names no package document")
        opf_path = str(rootfile.get("full-path"))
        opf = self.xml(opf_path)
        base = posixpath.dirname(opf_path)
        manifest = {}  # id -> (path, media type, properties)
        for item in opf.iterfind("manifest/item"):
            href = item.get("href")
            if item.get("id") and href:
                path = posixpath.normpath(posixpath.join(base, unquote(href)))
                props = set((item.get("properties") or "").split())
                manifest[item.get("id")] = (path, item.get("media-type") or "", props)
        spine_element = opf.find("spine")
        if spine_element is None:
            raise self.bad(f"{opf_path} has no spine")
        spine = []
        for ref in spine_element.iterfind("itemref"):
            entry = manifest.get(ref.get("idref") or "")
            if entry and entry[1] in _DOCUMENT_TYPES:
                spine.append((entry[0], ref.get("linear", "yes") != "no"))
        if not spine:
            raise self.bad(f"{opf_path}'s spine lists no documents")
        nav = next((p for p, _, props in manifest.values() if "nav" in props), None)
        ncx_id = spine_element.get("toc")
        ncx = manifest[ncx_id][0] if ncx_id in manifest else None
        if nav is not None and self.has(nav):
            entries, landmarks = self.nav_toc(nav)
        elif ncx is not None:
            entries, landmarks = self.ncx_toc(ncx), {}
            nav = None
        else:
            entries, landmarks = [], {}
        for ref in opf.iterfind("guide/reference"):
            kind, href = (ref.get("type") or "").casefold(), ref.get("href")
            if href and kind in _MATTER_TYPES:
                path = posixpath.normpath(posixpath.join(base, unquote(urldefrag(href)[0])))
                landmarks.setdefault(path, _MATTER_TYPES[kind])
        if nav is not None:
            landmarks.setdefault(nav, "table of contents")
        metadata = opf.find("metadata")
        book = Book(source=self.name, title=_dc(metadata, "title") or self.name)
        if metadata is not None:
            book.authors = [
                (c.text or "").strip()
                for c in metadata.iterfind("creator")
                if (c.text or "").strip()
            ]
            book.language = _dc(metadata, "language")
            book.description = _plain(_dc(metadata, "description"))
            date = _dc(metadata, "date")
            book.year = date[:4] if date and date[:4].isdigit() else None
            book.publisher = _dc(metadata, "publisher")
        self.cover(book, manifest, metadata)
        book.chapters = self.chapters(spine, entries, landmarks, book.title)
        return book

    def cover(self, book: Book, manifest: dict, metadata: ElementTree.Element | None) -> None:
        found = next((m for m in manifest.values() if "cover-image" in m[2]), None)
        if found is None and metadata is not None:  # EPUB 2: <meta name="cover" content="id">
            for meta in metadata.iterfind("meta"):
                if meta.get("name") == "cover" and meta.get("content") in manifest:
                    found = manifest[meta.get("content")]
        if (
            found is not None
            and found[1] in ("image/jpeg", "image/png")
            and found[0] in self.members
        ):
            book.cover, book.cover_type = self.read(found[0]), found[1]

    def nav_toc(self, nav: str) -> tuple[list[_Entry], dict[str, str]]:
        parser = _NavParser()
        parser.feed(self.text(nav))
        folder = posixpath.dirname(nav)
        entries = []
        for title, href, parent in parser.entries:
            path, fragment = _resolve(folder, href)
            parent_path = _resolve(folder, parent)[0] if parent else None
            if parent_path != path:  # a section inside its parent's file is not a chapter
                entries.append(_Entry(title, path, fragment))
        landmarks = {}
        for kind, href in parser.landmarks:
            if kind in _MATTER_TYPES:
                landmarks[_resolve(folder, href)[0]] = _MATTER_TYPES[kind]
        return entries, landmarks

    def ncx_toc(self, ncx: str) -> list[_Entry]:
        folder = posixpath.dirname(ncx)
        entries = []

        def walk(point: ElementTree.Element, parent: str | None) -> None:
            label = point.find("navLabel/text")
            content = point.find("content")
            path = None
            if content is not None and content.get("src"):
                path, fragment = _resolve(folder, str(content.get("src")))
                if path != parent:
                    title = " ".join((label.text or "").split()) if label is not None else ""
                    entries.append(_Entry(title, path, fragment))
            for child in point.iterfind("navPoint"):
                walk(child, path)

        nav_map = self.xml(ncx).find("navMap")
        for point in nav_map.iterfind("navPoint") if nav_map is not None else []:
            walk(point, None)
        return entries

    def chapters(
        self,
        spine: list[tuple[str, bool]],
        entries: list[_Entry],
        landmarks: dict[str, str],
        title: str,
    ) -> list[BookChapter]:
        """The book's chapters in spine order (see the module's docstring); `title` is the
        book's, which a title page repeats."""
        order = {path: i for i, (path, _) in enumerate(spine)}
        starts: dict[str, list[_Entry]] = {}
        seen = set()
        for entry in entries:
            if entry.path in order and (entry.path, entry.fragment) not in seen:
                seen.add((entry.path, entry.fragment))
                starts.setdefault(entry.path, []).append(entry)
        items: list[tuple[str, list[str], str, str | None]] = []  # title, html, location, matter
        started = False  # whether a table-of-contents entry has begun a chapter
        for path, linear in spine:
            if not self.has(path):
                raise self.bad(f"the spine's {path} is missing")
            document = self.text(path)
            matter = landmarks.get(path) or _declared_matter(document)
            here = sorted(starts.get(path, []), key=lambda e: _position(document, e.fragment))
            cuts = [_position(document, e.fragment) for e in here]
            head = document[: cuts[0]] if cuts else document
            if not here and (matter or not linear or not started or not starts):
                heading = _first_heading(document) or posixpath.basename(path)
                if not matter and not started and heading.casefold() == title.casefold():
                    matter = "title page"
                if not linear:
                    matter = matter or "outside the reading order"
                items.append((heading, [document], path, matter or matter_from_title(heading)))
                continue
            if not here:
                items[-1][1].append(head)  # a continuation of the chapter before
                continue
            if items and started and _has_text(head):
                items[-1][1].append(head)
            for i, entry in enumerate(here):
                end = cuts[i + 1] if i + 1 < len(cuts) else len(document)
                part = document[cuts[i] : end]
                if i == 0 and not started:
                    part = head + part
                location = path + (f"#{entry.fragment}" if entry.fragment else "")
                name = entry.title or _first_heading(part) or posixpath.basename(path)
                reason = (matter if i == 0 else None) or matter_from_title(name)
                items.append((name, [part], location, reason))
            started = True
        return [
            BookChapter(number, name, "".join(parts), location, matter)
            for number, (name, parts, location, matter) in enumerate(items, 1)
        ]


def _algorithm(data: ElementTree.Element) -> str:
    method = data.find("EncryptionMethod")
    return str(method.get("Algorithm")) if method is not None else ""


def _dc(metadata: ElementTree.Element | None, name: str) -> str | None:
    if metadata is None:
        return None
    element = metadata.find(name)
    text = " ".join((element.text or "").split()) if element is not None else ""
    return text or None


def _plain(text: str | None) -> str | None:
    """A description without its HTML markup (publishers often put some there)."""
    if not text:
        return None
    return " ".join(re.sub(r"<[^>]+>", " ", text).split()) or None


def _resolve(folder: str, href: str) -> tuple[str, str]:
    path, fragment = urldefrag(href)
    return posixpath.normpath(posixpath.join(folder, unquote(path))), unquote(fragment)


def _position(document: str, fragment: str) -> int:
    """Where the element with id `fragment` starts in `document`; 0 if none is found (the
    entry then starts at the top of its file)."""
    if not fragment:
        return 0
    match = re.search(
        r"<[A-Za-z][^>]*?\s(?:id|name)\s*=\s*([\"'])" + re.escape(fragment) + r"\1", document
    )
    return match.start() if match else 0


_EPUB_TYPE = re.compile(r"<(?:body|section)\b[^>]*\bepub:type\s*=\s*[\"']([^\"']+)", re.I)


def _declared_matter(document: str) -> str | None:
    """The matter the document's body or first section declares with epub:type."""
    match = _EPUB_TYPE.search(document)
    if not match:
        return None
    return next((_MATTER_TYPES[t] for t in match[1].split() if t in _MATTER_TYPES), None)


def _first_heading(document: str) -> str | None:
    match = re.search(r"<h[1-6]\b[^>]*>(.*?)</h[1-6]>", document, re.S | re.I)
    if not match:
        match = re.search(r"<title\b[^>]*>(.*?)</title>", document, re.S | re.I)
    text = " ".join(re.sub(r"<[^>]+>", " ", match[1]).split()) if match else ""
    return text or None


def _has_text(fragment: str) -> bool:
    body = re.sub(r"<head\b.*?</head>", "", fragment, flags=re.S | re.I)
    return bool(re.sub(r"<[^>]+>|&[#\w]+;|\s", "", body))


class _NavParser(HTMLParser):
    """EPUB 3's nav document: the `toc` nav's links, each with the link of the entry it is
    nested under, and the `landmarks` nav's (epub:type, href) pairs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.entries: list[tuple[str, str, str | None]] = []
        self.landmarks: list[tuple[str, str]] = []
        self.nav: str | None = None
        self.depth = 0  # <nav> nesting
        self.parents: list[str | None] = []  # the link of each open <li>
        self.link: tuple[str, str | None, list[str]] | None = None  # href, type, text

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "nav":
            self.depth += 1
            if self.depth == 1:
                kinds = (values.get("epub:type") or values.get("role") or "").split()
                self.nav = next(
                    (k for k in ("toc", "landmarks") if k in kinds or f"doc-{k}" in kinds), None
                )
        elif self.nav and tag == "li":
            self.parents.append(None)
        elif self.nav and tag == "a" and values.get("href"):
            self.link = (str(values["href"]), values.get("epub:type"), [])

    def handle_endtag(self, tag: str) -> None:
        if tag == "nav":
            self.depth -= 1
            if self.depth == 0:
                self.nav = None
        elif self.nav and tag == "li" and self.parents:
            self.parents.pop()
        elif tag == "a" and self.link is not None:
            href, kind, text = self.link
            self.link = None
            if self.nav == "toc":
                open_items = [p for p in self.parents[:-1] if p is not None]
                parent = open_items[-1] if open_items else None
                self.entries.append((" ".join("".join(text).split()), href, parent))
                if self.parents:
                    self.parents[-1] = href
            elif self.nav == "landmarks" and kind:
                self.landmarks.extend((k, href) for k in kind.split())

    def handle_data(self, data: str) -> None:
        if self.link is not None:
            self.link[2].append(data)
