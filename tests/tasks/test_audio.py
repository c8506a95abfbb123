"""Concatenation: pauses by break kind, click-free joins, and all-or-nothing outputs."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gpu_worker.errors import PermanentError
from gpu_worker.schema import GenerateRequest
from gpu_worker.wav import decode_wav, encode_wav
from tasks.audio import (
    AudioOptions,
    Placement,
    concatenate,
    concatenate_chapter,
    fade,
    tighten,
    trim,
)
from tasks.cache import ChunkAudio, ChunkJob, chunk_store
from tasks.loudness import LoudnessOptions, integrated_loudness, limit, true_peak_db
from tasks.outputs import OutputDir
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
    trimmed, lead = trim(speech(1.0, pad=0.5), RATE, OPTIONS)
    assert trimmed.size / RATE == pytest.approx(1.0 + 2 * OPTIONS.keep_ms / 1000, abs=0.015)
    assert lead == pytest.approx(0.5 - OPTIONS.keep_ms / 1000, abs=0.011)


def test_long_silences_inside_a_chunk_are_shortened() -> None:
    gap = np.zeros(int(2.0 * RATE), np.float32)
    chunk = np.concatenate(
        [speech(1.0, pad=0), gap, speech(1.0, pad=0), gap[: RATE // 4], speech(0.5, pad=0)]
    )
    tightened, cuts = tighten(chunk, RATE, longest=0.6)
    assert len(cuts) == 1  # the 0.25 s pause is left alone
    at, removed = cuts[0]
    assert 1.0 < at < 3.0 and removed == pytest.approx(1.4, abs=0.02)
    assert tightened.size / RATE == pytest.approx(chunk.size / RATE - removed, abs=1e-3)
    assert loud_regions(tightened)[1][0] - loud_regions(tightened)[0][1] == pytest.approx(
        0.6, abs=0.03
    )


def test_chunks_are_levelled_to_the_target_under_the_ceiling(tmp_path: Path) -> None:
    quiet, loud = speech(3.0, amplitude=0.05), speech(3.0, amplitude=0.7)
    target = LoudnessOptions(preset="audiobook")
    placements = concatenate(
        [(quiet, RATE, "sentence"), (loud, RATE, "end")], OPTIONS, tmp_path / "ch.wav", target
    )
    audio, _ = sf.read(tmp_path / "ch.wav", dtype="float32")
    for p in placements:
        part = audio[int(p.start * RATE) : int(p.end * RATE)]
        assert integrated_loudness(part, RATE) == pytest.approx(-18.0, abs=0.5)
        assert true_peak_db(part, RATE) < -3.0
    assert placements[0].gain_db - placements[1].gain_db == pytest.approx(23.0, abs=0.5)


def test_the_limiter_holds_true_peaks_and_barely_touches_loudness() -> None:
    t = np.arange(RATE * 4) / RATE
    voice = 0.1 * np.sin(2 * np.pi * 180 * t)
    voice[::12000] = 0.95  # a click every 500 ms: sparse, like the transients of speech
    limited = limit(voice.astype(np.float32), RATE, -3.0)
    assert true_peak_db(limited, RATE) <= -3.0
    assert integrated_loudness(limited, RATE) == pytest.approx(
        integrated_loudness(voice, RATE), abs=0.5
    )


def test_placements_map_chunk_time_onto_the_chapter() -> None:
    placement = Placement(start=10.0, end=14.0, lead=0.5, cuts=((2.0, 1.0),))
    assert placement.chapter_time(0.5) == 10.0  # the first kept sample
    assert placement.chapter_time(1.5) == 11.0
    assert placement.chapter_time(3.5) == 12.0  # after the cut: one second earlier
    assert placement.chapter_time(99.0) == 14.0  # clamped to the chunk


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
        encode_wav(samples, RATE),
        RATE,
        samples.size / RATE,
        100.0,
        True,
        [],
        "",
        [],
        [],
        0,
        0,
        1,
        0.0,
    )


def cached(storage: Path, *audio: ChunkAudio) -> list[ChunkJob]:
    """Jobs whose chunks are in the cache at `storage`, as generate_chunk leaves them."""
    store = chunk_store(storage)
    jobs = []
    for index, chunk in enumerate(audio):
        job = ChunkJob(index, GenerateRequest(text=f"chunk {index}"), f"key-{index}")
        store.write(chunk, key=job.cache_key)
        jobs.append(job)
    return jobs


def test_chunks_are_read_from_the_cache_as_they_are_joined(tmp_path: Path) -> None:
    audio = [chunk_audio(speech(0.5)), chunk_audio(speech(0.8, hz=220.0)), chunk_audio(speech(0.4))]
    jobs = cached(tmp_path / "cache", *audio)
    path = tmp_path / "ch.wav"
    placements = concatenate_chapter.fn(
        jobs, tmp_path / "cache", ["sentence", "paragraph", "end"], OPTIONS, path, LoudnessOptions()
    )
    direct = concatenate(
        [
            (*decode_wav(a.wav), k)
            for a, k in zip(audio, ["sentence", "paragraph", "end"], strict=True)
        ],
        OPTIONS,
        tmp_path / "direct.wav",
        LoudnessOptions(),
    )
    assert placements == direct
    assert path.read_bytes() == (tmp_path / "direct.wav").read_bytes()


def test_a_chunk_gone_from_the_cache_is_named(tmp_path: Path) -> None:
    jobs = cached(tmp_path / "cache", chunk_audio(speech(0.5)))
    gone = ChunkJob(1, GenerateRequest(text="chunk 1"), "key-gone")
    with pytest.raises(PermanentError, match=r"chunk 1 is no longer in the chunk cache.*rerun"):
        concatenate_chapter.fn(
            [*jobs, gone],
            tmp_path / "cache",
            ["sentence", "end"],
            OPTIONS,
            tmp_path / "ch.wav",
            LoudnessOptions(),
        )


def test_a_failure_midway_leaves_no_final_file_and_keeps_the_previous(tmp_path: Path) -> None:
    final = tmp_path / "out"
    first = OutputDir(str(final))
    concatenate_chapter.fn(
        cached(tmp_path / "one", chunk_audio(speech(0.5))),
        tmp_path / "one",
        ["end"],
        OPTIONS,
        first.path("ch.wav"),
        LoudnessOptions(),
    )
    first.write_text("metadata.json", '{"run": 1}')
    first.publish(last="metadata.json")
    before = (final / "ch.wav").read_bytes()

    second = OutputDir(str(final))
    corrupt = replace(chunk_audio(speech(1.0)), wav=b"RIFF-not-really")
    with pytest.raises(PermanentError, match="not decodable"):
        try:
            concatenate_chapter.fn(
                cached(tmp_path / "two", chunk_audio(speech(0.5)), corrupt),
                tmp_path / "two",
                ["sentence", "end"],
                OPTIONS,
                second.path("ch.wav"),
                LoudnessOptions(),
            )
        finally:
            second.discard()
    assert sorted(p.name for p in final.iterdir() if not p.name.startswith(".")) == [
        "ch.wav",
        "manifest.json",
        "metadata.json",
    ]
    assert (final / "ch.wav").read_bytes() == before
    assert (final / "metadata.json").read_text() == '{"run": 1}'
