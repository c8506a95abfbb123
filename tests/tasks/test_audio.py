"""Concatenation: pauses by break kind, click-free joins, and all-or-nothing outputs."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gpu_worker.errors import PermanentError
from gpu_worker.wav import encode_wav
from tasks.audio import AudioOptions, concatenate, concatenate_chapter, fade, trim
from tasks.generate import ChunkAudio
from tasks.storage import OutputDir
from tasks.text import Break

RATE = 24000
OPTIONS = AudioOptions()


def speech(
    seconds: float, pad: float = 0.3, amplitude: float = 0.5, hz: float = 180.0
) -> np.ndarray:
    """A voiced-like tone with silence around it, cut off at full amplitude (worst case for
    clicks: the last sample is far from zero)."""
    t = np.arange(int(seconds * RATE)) / RATE
    tone = amplitude * np.sin(2 * np.pi * hz * t + np.pi / 2)
    quiet = np.zeros(int(pad * RATE))
    return np.concatenate([quiet, tone, quiet]).astype(np.float32)


def loud_regions(audio: np.ndarray, threshold: float = 0.01) -> list[tuple[float, float]]:
    """(start, end) in seconds of runs of 10 ms frames above `threshold` RMS."""
    frame = RATE // 100
    frames = audio[: audio.size // frame * frame].reshape(-1, frame)
    loud = np.sqrt(np.mean(frames**2, axis=1)) > threshold
    edges = np.flatnonzero(np.diff(np.concatenate([[0], loud.astype(int), [0]])))
    return [(a / 100, b / 100) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def test_trim_keeps_a_breath_of_silence_around_speech() -> None:
    trimmed = trim(speech(1.0, pad=0.5), RATE, OPTIONS)
    assert trimmed.size / RATE == pytest.approx(1.0 + 2 * OPTIONS.keep_ms / 1000, abs=0.015)


def test_fade_ends_at_zero() -> None:
    faded = fade(np.full(RATE, 0.8, dtype=np.float32), RATE, 8.0)
    assert faded[0] == 0.0 and faded[-1] == 0.0
    assert faded[RATE // 2] == pytest.approx(0.8)


def test_pauses_follow_the_break_kinds(tmp_path: Path) -> None:
    kinds: list[Break] = ["sentence", "clause", "paragraph", "section", "end"]
    chunks = [(speech(1.0), RATE, kind) for kind in kinds]
    placements = concatenate(chunks, OPTIONS, tmp_path / "ch.wav")
    audio, rate = sf.read(tmp_path / "ch.wav", dtype="float32")
    assert rate == RATE and audio.ndim == 1
    assert sf.info(tmp_path / "ch.wav").subtype == "PCM_16"
    regions = loud_regions(audio)
    assert len(regions) == 5
    keep = OPTIONS.keep_ms / 1000
    for (_, end), (start, _), kind in zip(regions, regions[1:], kinds, strict=False):
        heard_gap = start - end
        assert heard_gap == pytest.approx(OPTIONS.pause(kind) + 2 * keep, abs=0.03), kind
    assert regions[0][0] == pytest.approx(OPTIONS.lead_in + keep, abs=0.03)
    assert audio.size / RATE - regions[-1][1] == pytest.approx(OPTIONS.tail + keep, abs=0.03)
    for p, q, kind in zip(placements, placements[1:], kinds, strict=False):
        assert q.start - p.end == pytest.approx(OPTIONS.pause(kind), abs=1 / RATE)


def test_joins_never_jump(tmp_path: Path) -> None:
    """Chunks that start and end at full amplitude still join without a click."""
    loud = (0.9 * np.sin(2 * np.pi * 150 * np.arange(RATE) / RATE + np.pi / 2)).astype(np.float32)
    options = AudioOptions(sentence_pause=0.0, lead_in=0.0, tail=0.0)
    concatenate([(loud, RATE, "sentence")] * 4, options, tmp_path / "ch.wav")
    audio, _ = sf.read(tmp_path / "ch.wav", dtype="float32")
    steepest_in_tone = np.max(np.abs(np.diff(loud)))
    assert np.max(np.abs(np.diff(audio))) <= steepest_in_tone + 2 / 32768


def test_chunks_at_another_rate_are_resampled(tmp_path: Path) -> None:
    placements = concatenate([(speech(1.0)[::2], RATE // 2, "end")], OPTIONS, tmp_path / "c.wav")
    assert placements[0].end - placements[0].start == pytest.approx(1.08, abs=0.03)


def chunk_audio(samples: np.ndarray) -> ChunkAudio:
    return ChunkAudio(
        encode_wav(samples, RATE), RATE, samples.size / RATE, 100.0, True, "", [], 0, 1, 0.0
    )


def test_a_failure_midway_leaves_no_final_file_and_keeps_the_previous(tmp_path: Path) -> None:
    final = tmp_path / "out"
    first = OutputDir(final)
    concatenate_chapter.fn([chunk_audio(speech(0.5))], ["end"], OPTIONS, first.path("ch.wav"))
    first.write_text("metadata.json", '{"run": 1}')
    first.publish(last="metadata.json")
    before = (final / "ch.wav").read_bytes()

    second = OutputDir(final)
    corrupt = ChunkAudio(b"RIFF-not-really", RATE, 1.0, 100.0, True, "", [], 0, 1, 0.0)
    with pytest.raises(PermanentError, match="not decodable"):
        try:
            concatenate_chapter.fn(
                [chunk_audio(speech(0.5)), corrupt],
                ["sentence", "end"],
                OPTIONS,
                second.path("ch.wav"),
            )
        finally:
            second.discard()
    assert sorted(p.name for p in final.iterdir()) == ["ch.wav", "metadata.json"]
    assert (final / "ch.wav").read_bytes() == before
    assert (final / "metadata.json").read_text() == '{"run": 1}'
