"""The nightly batch: chapters as subflows, failures isolated and named, current ones skipped."""

from pathlib import Path

import pytest

from flows.batch import narrate_batch
from gpu_worker.errors import PermanentError
from gpu_worker.schema import GenerationParams
from tasks.artifacts import artifact_key
from tasks.loudness import LoudnessOptions
from tasks.options import NarrationOptions
from tasks.storage import output_stem
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


def test_chapters_never_share_an_output_folder(tmp_path: Path, cache: Path) -> None:
    """Names keep their letters in any script; two names that would still land in one
    folder (on this file system or a case-insensitive one) are refused, both, naming each
    other, and nothing of theirs is written."""
    chapters, out = tmp_path / "chapters", tmp_path / "audio"
    chapters.mkdir()
    for name, text in {
        "Глава 1.md": "The keeper climbed the stairs.",
        "Часть 1.md": "The beam swept across the water.",
        "Chapter 1.md": "The gulls rose from the rocks.",
        "chapter-1.md": "The tide came in at noon.",
    }.items():
        (chapters / name).write_text(f"{text}\n")
    with pytest.raises(PermanentError) as failure:
        narrate_batch(str(chapters), str(out), "*.md", None, FAST, 2)
    message = str(failure.value)
    assert message.startswith("2 of 4 chapters failed")
    assert "Chapter 1.md: would share the output folder 'Chapter-1' with " in message
    assert str(chapters / "chapter-1.md") + "; rename one of them" in message
    assert sorted(p.name for p in out.iterdir()) == ["Глава-1", "Часть-1"]
    assert (out / "Глава-1" / "Глава-1.wav").is_file()
    assert (out / "Часть-1" / "Часть-1.wav").is_file()
    # combining marks are part of a name too (Devanagari and Hebrew vowel signs)
    assert output_stem("हिन्दी.md") == "हिन्दी" and output_stem("שָׁלוֹם.md") == "שָׁלוֹם"
    # and their Prefect artifacts are kept apart too
    assert artifact_key("Глава-1", "summary") != artifact_key("Часть-1", "summary")
