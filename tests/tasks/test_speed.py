"""Speed: speech played faster or slower with its pitch kept (tasks/audio.py `stretch`)."""

import json
from pathlib import Path

import numpy as np
import pytest

from tasks.audio import AudioOptions, Placement, concatenate, stretch

RATE = 24000


def tone(seconds: float, hz: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def pitch(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    return float(np.fft.rfftfreq(audio.size, 1 / RATE)[np.argmax(spectrum)])


@pytest.mark.parametrize("speed", [0.8, 1.2, 1.5])
def test_a_stretch_changes_the_length_and_keeps_the_pitch(speed: float) -> None:
    before = tone(2.0)
    after = stretch(before, RATE, speed)
    assert after.size / RATE == pytest.approx(2.0 / speed, rel=0.02)
    assert pitch(after) == pytest.approx(pitch(before), abs=3.0)


def test_word_times_follow_the_stretch(tmp_path: Path) -> None:
    options = AudioOptions(speed=1.25, lead_in=0.0)
    chunk = np.concatenate([np.zeros(RATE // 2, np.float32), tone(2.0)])
    [placed] = concatenate([(chunk, RATE, "end")], options, tmp_path / "ch.wav")
    assert placed.speed == 1.25
    assert placed.end - placed.start == pytest.approx(2.0 / 1.25, abs=0.06)  # and a breath
    # a word heard 1.5 s into the tone is 1.2 s into the stretched speech
    assert placed.chapter_time(0.5 + 1.5) == pytest.approx(
        placed.start + (0.5 + 1.5 - placed.lead) / 1.25, abs=0.001
    )
    assert Placement(0.0, 10.0, lead=1.0, speed=2.0).chapter_time(5.0) == 2.0


@pytest.mark.usefixtures("prefect_server")
def test_speed_shortens_the_speech_keeps_the_words_and_never_regenerates(
    tmp_path: Path, cache: Path
) -> None:
    from flows.chapter import NarrationOptions, narrate_chapter
    from gpu_worker.schema import GenerationParams
    from tests.conftest import local_backend

    source = tmp_path / "tide.md"
    source.write_text(
        "The tide came in over the rocks at dusk, and the keeper lit the lamp.\n\n"
        "A gull sat on the rail and watched the sea turn from grey to black.\n\n"
        "By midnight the wind had dropped, and the harbour lay still under the stars.\n"
    )
    backend = local_backend()

    def narrate(speed: float) -> tuple[float, float]:
        options = NarrationOptions(
            generation=GenerationParams(n_candidates=1),
            audio=AudioOptions(speed=speed),
            formats=[],
        )
        result = narrate_chapter(str(source), str(tmp_path / f"out-{speed}"), None, options)
        chunks = json.loads(Path(result.metadata).read_text())["chunks"]
        assert result.wer is not None
        return sum(c["end"] - c["start"] for c in chunks), result.wer

    normal, wer = narrate(1.0)
    before = backend.requests
    fast, fast_wer = narrate(1.2)
    assert backend.requests == before  # every chunk from the cache: speed is not in its key
    assert 0.15 <= 1 - fast / normal <= 0.20
    assert fast_wer <= wer + 0.03
