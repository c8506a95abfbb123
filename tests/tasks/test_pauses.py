"""Pause marks: `[pause 1.5s]` and `[pause]` in the text become silence, never speech."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gpu_worker.errors import InputError
from gpu_worker.qc import FRAME_S, sounding_frames
from tasks.text import ChunkingOptions, make_chunks

OPTIONS = ChunkingOptions()
CHAPTER = (
    "The keeper waited by the lamp. [pause 1.5s] Then the ship's horn sounded.\n\n"
    "[pause]\n\n"
    "Morning came grey and still, [pause 2 seconds] and the lamp went dark.\n"
)


def test_marks_cut_chunks_and_are_never_in_the_text() -> None:
    chunks = make_chunks(CHAPTER, OPTIONS)
    assert [(c.display, c.break_after, c.pause_seconds) for c in chunks] == [
        ("The keeper waited by the lamp.", "pause", 1.5),
        ("Then the ship's horn sounded.", "section", None),
        ("Morning came grey and still", "pause", 2.0),
        ("and the lamp went dark.", "end", None),
    ]
    assert not any("pause" in c.text.lower() for c in chunks)
    source_words = CHAPTER[chunks[1].span[0] : chunks[1].span[1]]
    assert source_words == "Then the ship's horn sounded."


@pytest.mark.parametrize("mark", ["[pause 61s]", "[PAUSE 90 seconds]"])
def test_a_pause_over_a_minute_is_refused(mark: str) -> None:
    with pytest.raises(InputError, match="a pause mark is at most 60 s"):
        make_chunks(f"One line. {mark} Two lines.", OPTIONS)


def silences(audio: np.ndarray, rate: int) -> list[tuple[float, float]]:
    """(start, length) of every silence between sounds, in seconds."""
    sounding = sounding_frames(audio, rate)
    found, start = [], None
    for i, loud in enumerate(sounding):
        if not loud and start is None:
            start = i
        elif loud and start is not None:
            if start > 0:
                found.append((start * FRAME_S, (i - start) * FRAME_S))
            start = None
    return found


@pytest.mark.usefixtures("prefect_server")
def test_pause_marks_are_silences_of_the_asked_length_and_never_heard(
    tmp_path: Path, cache: Path
) -> None:
    from flows.chapter import NarrationOptions, narrate_chapter
    from gpu_worker.schema import GenerationParams

    source = tmp_path / "marks.md"
    source.write_text(CHAPTER)
    options = NarrationOptions(generation=GenerationParams(n_candidates=1), formats=[])
    result = narrate_chapter(str(source), str(tmp_path / "out"), None, options)
    chunks = json.loads(Path(result.metadata).read_text())["chunks"]
    audio, rate = sf.read(result.audio, dtype="float32")
    gaps = silences(audio, rate)
    keep = 2 * options.audio.keep_ms / 1000  # the breath kept at each chunk's edges
    for index, asked in ((0, 1.5), (1, options.audio.section_pause), (2, 2.0)):
        end, start = chunks[index]["end"], chunks[index + 1]["start"]
        between = [length for at, length in gaps if end - 0.2 <= at <= start]
        assert between, (index, gaps)
        assert max(between) == pytest.approx(asked + keep, abs=0.1), (index, between)
    heard = json.loads((tmp_path / "out" / "validation.json").read_text())["chunks"]
    assert not any("pause" in c["heard"].lower() for c in heard)
    assert result.validation_flagged == []
