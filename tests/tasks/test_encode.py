"""MP3 and M4B from the chapter WAV: same duration, M4B chapters readable."""

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from tasks.encode import Marker, decoded_seconds, encode, markers

RATE = 24000


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    t = np.arange(int(12.345 * RATE)) / RATE
    path = tmp_path_factory.mktemp("encode") / "ch.wav"
    sf.write(path, (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), RATE, subtype="PCM_16")
    return path


@pytest.mark.parametrize("kind", ["mp3", "m4b"])
def test_encoded_files_play_as_long_as_the_wav(wav: Path, tmp_path: Path, kind: str) -> None:
    out = encode(
        wav,
        tmp_path / f"ch.{kind}",
        kind,
        "The Night Crossing",  # type: ignore[arg-type]
        [Marker("Part One", 0.0, 5.0), Marker("Part Two", 5.0, 12.345)],
    )
    assert decoded_seconds(out) == pytest.approx(sf.info(wav).duration, abs=0.05)
    with av.open(str(out)) as container:
        assert container.metadata["title"] == "The Night Crossing"
        stream = container.streams.audio[0]
        assert stream.rate == 44100 and stream.channels == 1


def test_m4b_chapters_are_readable(wav: Path, tmp_path: Path) -> None:
    out = encode(
        wav,
        tmp_path / "ch.m4b",
        "m4b",
        "Book",
        [Marker("Part One", 0.0, 5.0), Marker("Part Two", 5.0, 12.345)],
    )
    with av.open(str(out)) as container:
        chapters = container.chapters()
    assert [c["metadata"]["title"] for c in chapters] == ["Part One", "Part Two"]
    assert [float(c["start"] * c["time_base"]) for c in chapters] == [0.0, 5.0]


def test_markers_follow_the_headings() -> None:
    assert markers([("Chapter One", 0.5), ("The Storm", 40.0)], "ch", 90.0) == [
        Marker("Chapter One", 0.0, 40.0),
        Marker("The Storm", 40.0, 90.0),
    ]
    assert markers([("The Storm", 40.0)], "Chapter", 90.0) == [
        Marker("Chapter", 0.0, 40.0),
        Marker("The Storm", 40.0, 90.0),
    ]
    assert markers([], "Chapter", 90.0) == [Marker("Chapter", 0.0, 90.0)]
