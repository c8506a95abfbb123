"""Phase 1: a chapter file's bytes into text, or a one-line refusal saying why.

Phase 1, first step: a chapter file's bytes become text (UTF-8, BOM and CRLF fine; UTF-16
with or without a BOM; HTML turned into markdown-like text), refused with one line when it
is not text, and checked for scripts the engines cannot read.
"""

import codecs
import re
import unicodedata
from html.parser import HTMLParser

from gpu_worker.errors import InputError
from gpu_worker.spoken import readable
from tasks import storage


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
    """An HTML document as the markdown parse_blocks reads: headings as `#`, block elements
    as paragraphs, table rows as `| a | b |` lines, `<hr>` as a scene break; script, style,
    head and other unspoken elements dropped; the page's own text escaped, so it is never
    read as markdown."""

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
            self.out.append("\n\n|")
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
            text = re.sub(r"\s+", " ", data)  # whitespace in HTML is not layout
            self.out.append(_literal(text))


def _literal(text: str) -> str:
    """`text` with every character markdown could read as markup backslash-escaped: an
    HTML page's text is text ("# of guests" in a paragraph is not a heading)."""
    text = re.sub(r"([\\`*_\[\]<>#|~!+=-])", r"\\\1", text)
    return re.sub(r"(\d)([.)])", r"\1\\\2", text)


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
