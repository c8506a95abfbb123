"""Books narrated through the real flow: EPUB in, one M4B out (markers, cover, tags), an
ACX package that passes ACX's checks, and an edit that regenerates only its chunks."""

import json
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from mutagen.mp4 import MP4
from typer.testing import CliRunner

from flows.batch import narrate_batch
from flows.book import narrate_book
from flows.cli import app
from flows.services import configured
from gpu_worker.errors import PermanentError
from gpu_worker.schema import GenerationParams
from tasks.book import read_book
from tasks.book.acx import HEAD_S, TAIL_S
from tasks.book.audiobook import CHAPTER_GAP, BookTags
from tasks.encode import decoded_seconds
from tasks.options import NarrationOptions
from tasks.settings import NarratorSettings
from tests import books
from tests.conftest import local_backend

pytestmark = pytest.mark.usefixtures("prefect_server")
FAST = NarrationOptions(
    generation=GenerationParams(n_candidates=1), formats=[], validate_chapter=False
)
TAGS = BookTags(narrator="Grace Hopper", series="Keepers", series_position="2")


def engine_calls() -> int:
    return int(local_backend().requests)


def read_chapters(m4b: Path) -> list[tuple[str, float, float]]:
    with av.open(str(m4b)) as container:
        return [
            (
                c["metadata"]["title"],
                float(c["start"] * c["time_base"]),
                float(c["end"] * c["time_base"]),
            )
            for c in container.chapters()
        ]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One chunk cache for this module's books: the same chapters in another format are
    cache hits (the spoken text is what is cached, not the markup)."""
    return tmp_path_factory.mktemp("book-cache")


def room_tone_db(mp3: Path, seconds: float) -> float:
    """RMS of the first `seconds` of the decoded file, in dB."""
    with av.open(str(mp3)) as container:
        samples = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
    head = samples[: int(seconds * 44100)].astype(np.float64)
    return float(20 * np.log10(np.sqrt(np.mean(head**2))))


def test_an_epub_becomes_one_m4b_and_an_edit_regenerates_only_its_chunks(
    tmp_path: Path, shared_cache: Path
) -> None:
    book, out = books.epub(tmp_path / "keeper.epub", 3), tmp_path / "audio"
    with configured(NarratorSettings(cache_dir=str(shared_cache))):
        edit_and_rerun(book, out)


def edit_and_rerun(book: Path, out: Path) -> None:
    result = narrate_book(str(book), str(out), tags=TAGS, options=FAST, acx=True)

    assert result.chapters == ["Chapter One", "Chapter Two", "Chapter Three"]
    m4b = Path(result.audiobook)
    assert m4b == out / "keeper.m4b"
    folders = ["04-Chapter-One", "05-Chapter-Two", "06-Chapter-Three"]
    lengths = [sf.info(str(out / f / f"{f}.wav")).duration for f in folders]
    starts = [sum(lengths[:i]) + i * CHAPTER_GAP for i in range(3)]
    found = read_chapters(m4b)
    assert [title for title, _, _ in found] == result.chapters
    total = starts[-1] + lengths[-1]
    ends = [*starts[1:], total]  # a chapter's marker runs to the next one's
    for (_, start, end), expected, until in zip(found, starts, ends, strict=True):
        assert (start, end) == pytest.approx((expected, until), abs=0.05)
    assert decoded_seconds(m4b) == pytest.approx(total, abs=0.05)
    tags = MP4(str(m4b)).tags
    assert tags is not None
    assert tags["\xa9nam"] == [books.TITLE] and tags["\xa9ART"] == [books.AUTHOR]
    assert tags["\xa9wrt"] == ["Grace Hopper"] and tags["\xa9day"] == ["2026"]
    assert tags["desc"] == [books.DESCRIPTION] and tags["stik"] == [2]
    assert bytes(tags["----:com.apple.iTunes:SERIES"][0]) == b"Keepers"
    assert bytes(tags["covr"][0]) == books.cover_png()
    record = json.loads((out / "book.json").read_text())
    levels = [c["integrated_lufs"] for c in record["chapters"]]
    assert all(abs(lufs + 18.0) <= 1.0 for lufs in levels), levels  # the audiobook preset
    assert record["loudness_spread_lu"] == pytest.approx(max(levels) - min(levels), abs=0.01)

    report = json.loads(Path(str(result.acx_report)).read_text())
    assert report["passed"], report
    sample = report["retail_sample"]  # the whole book is 17 s: all of it, and a note why
    assert sample["length_ok"] is False and "ACX asks for a sample of 1-5 minutes" in sample["note"]
    assert decoded_seconds(out / "acx" / "retail-sample.mp3") == pytest.approx(
        sum(lengths) + HEAD_S + TAIL_S, abs=0.05
    )
    names = [f["file"] for f in report["files"]]
    mp3s = ["01-Chapter-One.mp3", "02-Chapter-Two.mp3", "03-Chapter-Three.mp3"]
    assert names == ["00-Opening-credits.mp3", *mp3s, "04-Closing-credits.mp3"]
    for name, length in zip(mp3s, lengths, strict=True):
        mp3 = out / "acx" / name
        assert decoded_seconds(mp3) == pytest.approx(length + HEAD_S + TAIL_S, abs=0.05)
        head = room_tone_db(mp3, HEAD_S - 0.1)
        assert -80.0 < head < -60.0  # room tone: quiet, but not digital silence
        with av.open(str(mp3)) as container:
            stream = container.streams.audio[0]
            assert (container.format.name, stream.rate, stream.channels) == ("mp3", 44100, 1)
            assert stream.bit_rate == 192_000

    edited = [books.CHAPTERS[0], ("Chapter Two", ["The beam swept across the calm water."])]
    books.epub(book, 3, [*edited, books.CHAPTERS[2]])
    calls = engine_calls()
    again = narrate_book(str(book), str(out), tags=TAGS, options=FAST)
    assert engine_calls() == calls + 1  # chapter two's changed sentence, nothing else
    assert again.batch.narrated == [str(out / "text" / "05-Chapter-Two.html")]
    assert again.assembled and len(again.batch.skipped) == 2
    lengths[1] = sf.info(str(out / folders[1] / f"{folders[1]}.wav")).duration
    assert read_chapters(m4b)[2][1] == pytest.approx(sum(lengths[:2]) + 2 * CHAPTER_GAP, abs=0.05)

    calls = engine_calls()
    assert not narrate_book(str(book), str(out), tags=TAGS, options=FAST).assembled
    assert engine_calls() == calls


@pytest.mark.parametrize("kind", ["docx", "epub2"])
def test_book_run_narrates_a_word_document_and_an_epub2(
    tmp_path: Path, shared_cache: Path, kind: str
) -> None:
    """`narrator book run`, as a user types it: one line per result, the M4B's three
    markers titled from the headings (DOCX) or the NCX (EPUB 2)."""
    if kind == "docx":
        book = books.docx(tmp_path / "keeper.docx")
    else:
        book = books.epub(tmp_path / "keeper.epub", 2)
    out = tmp_path / "audio"
    args = ["book", "run", str(book), "--out", str(out), "--candidates", "1", "--no-validate"]
    result = CliRunner().invoke(
        app, [*args, "--narrator", "Grace Hopper", "--cache-dir", str(shared_cache)]
    )
    assert result.exit_code == 0, result.output
    m4b = out / "keeper.m4b"
    assert f"audiobook  {m4b}" in result.output and "3 (3 narrated now" in result.output
    found = read_chapters(m4b)
    assert [title for title, _, _ in found] == [t for t, _ in books.CHAPTERS]
    folders = sorted(p for p in out.iterdir() if (p / f"{p.name}.wav").is_file())
    lengths = [sf.info(str(f / f"{f.name}.wav")).duration for f in folders]
    starts = [sum(lengths[:i]) + i * CHAPTER_GAP for i in range(3)]
    assert [start for _, start, _ in found] == pytest.approx(starts, abs=0.05)
    tags = MP4(str(m4b)).tags
    assert tags is not None and tags["\xa9wrt"] == ["Grace Hopper"]
    assert bytes(tags["covr"][0]) == books.cover_png()


def test_the_nightly_batch_takes_a_book_as_its_source(tmp_path: Path, shared_cache: Path) -> None:
    book, out = books.epub(tmp_path / "keeper.epub", 3), tmp_path / "nightly"
    with configured(NarratorSettings(cache_dir=str(shared_cache))):
        result = narrate_batch(str(book), str(out), options=FAST)
    text = out / "text"
    assert sorted(Path(c).name for c in result.narrated) == [
        "04-Chapter-One.html",
        "05-Chapter-Two.html",
        "06-Chapter-Three.html",
    ]
    assert [title for title, _, _ in read_chapters(out / "keeper.m4b")] == [
        t for t, _ in books.CHAPTERS
    ]
    assert sorted(p.name for p in text.iterdir()) == sorted(Path(c).name for c in result.narrated)


def test_a_failed_chapter_is_named_and_no_book_is_assembled(
    tmp_path: Path, shared_cache: Path
) -> None:
    book, out = books.epub(tmp_path / "keeper.epub", 3), tmp_path / "audio"
    one, two, three = (len(c.html.encode()) for c in read_book(str(book)).select())
    assert one > max(two, three)  # chapter one has two paragraphs
    limit = NarratorSettings(cache_dir=str(shared_cache), max_chapter_bytes=max(two, three))
    with configured(limit), pytest.raises(PermanentError) as failure:
        narrate_book(str(book), str(out), options=FAST)
    message = str(failure.value)
    assert message.startswith("the book was not assembled: 1 of 3 chapters failed: ")
    assert f"04-Chapter-One.html: {one:,} bytes is over the" in message
    assert not (out / "keeper.m4b").exists() and (out / "05-Chapter-Two").is_dir()
