"""The nightly batch: chapters as subflows, failures isolated and named, current ones skipped."""

from pathlib import Path

import pytest

from flows.batch import narrate_batch
from gpu_worker.errors import PermanentError
from gpu_worker.schema import GenerationParams
from tasks.loudness import LoudnessOptions
from tasks.options import NarrationOptions
from tests.conftest import local_backend

pytestmark = pytest.mark.usefixtures("prefect_server")
FAST = NarrationOptions(
    generation=GenerationParams(n_candidates=1), formats=[], validate_chapter=False
)


def engine_calls() -> int:
    return int(local_backend().requests)


def test_one_bad_chapter_fails_alone_and_a_rerun_skips_what_is_done(
    tmp_path: Path, cache: Path
) -> None:
    chapters, out = tmp_path / "chapters", tmp_path / "audio"
    chapters.mkdir()
    (chapters / "one.md").write_text("# One\n\nThe keeper climbed the stairs.\n")
    (chapters / "two.md").write_text("# Two\n\nThe beam swept across the water.\n")
    (chapters / "three.md").write_bytes(b"# Three\n\nCaf" + b"\xe9 au lait.\n")

    with pytest.raises(PermanentError) as failure:
        narrate_batch(str(chapters), str(out), "*.md", None, FAST, 2)
    message = str(failure.value)
    assert message.startswith("1 of 3 chapters failed: ")
    assert "three.md: not UTF-8 text (byte 0xe9 at byte offset 12)" in message
    assert sorted(p.name for p in out.iterdir()) == ["one", "two"]
    assert (out / "one" / "one.wav").is_file() and (out / "two" / "metadata.json").is_file()

    (chapters / "three.md").write_text("# Three\n\nThe light came round again.\n")
    calls = engine_calls()
    again = narrate_batch(str(chapters), str(out), "*.md", None, FAST, 2)
    assert again.skipped == [str(chapters / "one.md"), str(chapters / "two.md")]
    assert again.narrated == [str(chapters / "three.md")] and again.failed == {}
    assert engine_calls() == calls + 2  # three.md's heading and sentence, nothing else


def test_changed_options_make_a_chapter_stale(tmp_path: Path, cache: Path) -> None:
    chapters = tmp_path / "chapters"
    chapters.mkdir()
    (chapters / "one.md").write_text("The keeper climbed the stairs.\n")
    narrate_batch(str(chapters), str(tmp_path / "audio"), "*.md", None, FAST, 1)
    louder = FAST.model_copy(update={"loudness": LoudnessOptions(preset="podcast")})
    result = narrate_batch(str(chapters), str(tmp_path / "audio"), "*.md", None, louder, 1)
    assert result.narrated == [str(chapters / "one.md")] and result.skipped == []
