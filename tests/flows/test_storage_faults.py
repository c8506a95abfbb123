"""Full disks and busy folders during a real chapter run (local backend, in-process Prefect):
a cache on a small tmpfs, outputs on another, a second run of a chapter being written.

Mounting a tmpfs needs root (CI runs as root); elsewhere these tests are skipped, saying so.
"""

import logging
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flows.chapter import ChapterResult, NarrationOptions, narrate_chapter
from flows.services import configured
from gpu_worker.errors import InputError, StorageFull
from gpu_worker.schema import GenerationParams
from gpu_worker.wav import decode_wav
from tasks.cache import chunk_store, read_chunk
from tasks.outputs import OutputDir, published_problem
from tasks.settings import NarratorSettings
from tests.conftest import local_backend

pytestmark = pytest.mark.usefixtures("prefect_server")

CHAPTER = """The keeper climbed the stairs at dusk.

A gull sat on the rail and watched the sea.

The lamp turned once, then twice, and the night began.
"""
OPTIONS = NarrationOptions(
    generation=GenerationParams(n_candidates=1, max_retries=0),
    formats=[],
    validate_chapter=False,
)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount a tmpfs of the given size (e.g. "300k") under the test's folder."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def narrate(tmp_path: Path, out: Path) -> ChapterResult:
    source = tmp_path / "keeper.md"
    source.write_text(CHAPTER)
    return narrate_chapter(str(source), str(out), None, OPTIONS)


def entries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def test_a_full_cache_disk_is_named_and_no_audio_is_lost(
    tmpfs: Callable[[str], Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    small = tmpfs("300k")  # room for one chunk's entry, not three
    with configured(NarratorSettings(cache_dir=str(small))):
        backend = local_backend()
        before = backend.requests
        with caplog.at_level(logging.WARNING):
            result = narrate(tmp_path, tmp_path / "out")
        assert backend.requests - before == 3  # each chunk generated once: none thrown away
    samples, rate = decode_wav(Path(result.audio).read_bytes(), "chapter")
    assert samples.size / rate == pytest.approx(result.duration_seconds, abs=0.01)
    assert result.duration_seconds > 4.0  # all three sentences, not one
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert f"disk full at {small}" in warned
    assert "this chapter is whole, and a rerun generates them again" in warned
    # nothing half-written: every file in the cache is a whole entry that reads back
    store = chunk_store(small)
    written = entries(small)
    assert 0 < len(written) < 3
    for path in written:
        assert not path.name.startswith(".")
        assert read_chunk(store, path.name, small) is not None
    assert published_problem(str(tmp_path / "out")) is None


def test_a_full_output_disk_is_named_and_the_chunks_stay_cached(
    tmpfs: Callable[[str], Path], tmp_path: Path, cache: Path
) -> None:
    small = tmpfs("64k")  # the chapter's WAV does not fit
    with pytest.raises(StorageFull) as full:
        narrate(tmp_path, small / "out")
    assert str(full.value).startswith(f"disk full at {small / 'out'}")
    assert [p.name for p in (small / "out").iterdir()] == [".narrator.lock"]  # no half set
    backend = local_backend()
    before = backend.requests
    again = narrate(tmp_path, tmp_path / "out")  # with room: every chunk from the cache
    assert backend.requests == before
    assert again.cache_hits == again.chunks == 3


def test_a_chapter_being_written_by_another_run_is_refused_before_any_work(
    tmp_path: Path, cache: Path
) -> None:
    busy = OutputDir(str(tmp_path / "out"))  # another run, still writing this chapter
    backend = local_backend()
    before = backend.requests
    try:
        with pytest.raises(InputError, match="another run is writing this chapter"):
            narrate(tmp_path, tmp_path / "out")
    finally:
        busy.discard()
    assert backend.requests == before
    assert not cache.exists() or entries(cache) == []
    assert narrate(tmp_path, tmp_path / "out").chunks == 3  # free again once it is done
