"""Concatenation at chapter scale: hours of chunk WAVs joined into one chapter WAV.

    python bench/concat.py [--hours 3] [--chunk-seconds 15] [--profile]

Three processes, one after another, so that each one's peak memory is its own:
    setup    writes speech-like chunk WAVs (24 kHz, 16-bit) of about chunk-seconds each to a
             scratch directory, enough for a chapter of `hours` once trimmed and tightened:
             syllable-rate bursts of a voiced buzz and noise, short gaps between words, some
             silences longer than `max_inner_pause` (for `tighten`), silence at both ends
             (for `trim`), a level that varies from chunk to chunk and a few plosive-like
             peaks (for the leveller and its limiter)
    concat   imports `tasks.audio`, notes its RSS, then runs `tasks.audio.concatenate` with
             the default AudioOptions and the audiobook LoudnessOptions, fed by a generator
             that reads and decodes one file at a time, as the flow reads its cache
    verify   runs `tasks.verify.verify_audio` on the chapter (the flow's post-processing check)
Prints one table: wall time, peak RSS (and RSS after imports) of concat and verify, seconds
of audio per wall second, the chapter's size and duration against what its placements say.
`--profile` runs concat under cProfile and prints its top functions. Writes the figures as
JSON to bench/results/.
"""

import argparse
import cProfile
import datetime
import hashlib
import io
import json
import math
import os
import platform
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from bench.record import save

ROOT = Path(__file__).resolve().parent.parent
RATE = 24000
BREAKS = ["sentence", "clause", "turn", "paragraph", "section"]
BREAK_ODDS = [0.6, 0.14, 0.05, 0.2, 0.01]
WORDS_PER_MINUTE = 150  # for verify_audio's pace check


def rss_mb() -> float:
    """This process's resident memory now."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def carrier(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A voiced buzz (harmonics of a wavering pitch) plus breathy noise: the raw material
    every chunk's syllables are cut from."""
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = 130 + 25 * np.sin(2 * np.pi * 0.3 * t) + 10 * np.sin(2 * np.pi * 2.1 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 16))
    return (0.3 * voiced + 0.15 * rng.standard_normal(t.size)).astype(np.float32)


def envelope(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Syllable-rate gain over a chunk: silence at both ends, syllables of 120-300 ms in
    words, 30-120 ms between words, 300-500 ms between sentences, and now and then a
    silence of 0.8-1.8 s (longer than the default max_inner_pause)."""
    env = np.zeros(int(seconds * RATE), dtype=np.float32)
    at = int(rng.uniform(0.15, 0.4) * RATE)
    end = env.size - int(rng.uniform(0.2, 0.6) * RATE)
    words_left = rng.integers(6, 16)
    while True:
        for _ in range(rng.integers(1, 4)):
            n = int(rng.uniform(0.12, 0.3) * RATE)
            if at + n > end:
                return env
            env[at : at + n] = np.hanning(n) ** 0.5 * rng.uniform(0.5, 1.0)
            at += n
        words_left -= 1
        if words_left == 0:
            words_left = rng.integers(6, 16)
            long_pause = rng.random() < 0.15
            at += int((rng.uniform(0.8, 1.8) if long_pause else rng.uniform(0.3, 0.5)) * RATE)
        else:
            at += int(rng.uniform(0.03, 0.12) * RATE)


def speech_chunk(seconds: float, source: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    env = envelope(seconds, rng)
    start = rng.integers(0, source.size - env.size)
    audio = source[start : start + env.size] * env * np.float32(10 ** (rng.uniform(-12, 0) / 20))
    for at in rng.integers(0, audio.size - 48, size=rng.integers(2, 6)):
        if env[at] > 0.3:  # a plosive: a 2 ms spike well above the syllable around it
            audio[at : at + 48] *= np.float32(rng.uniform(2.0, 3.5))
    noise_floor = np.float32(10 ** (-75 / 20)) * rng.standard_normal(audio.size)
    return np.clip(audio + noise_floor.astype(np.float32), -1.0, 1.0)


def setup(directory: Path, hours: float, chunk_seconds: float) -> dict[str, Any]:
    """Write the chunk WAVs and a manifest of (file, break after)."""
    rng = np.random.default_rng(8)
    source = carrier(4 * chunk_seconds, rng)
    # trim and tighten take ~4 % of a chunk away (more than the pauses give back): enough
    # chunks for the chapter itself to last `hours`
    count = max(1, math.ceil(hours * 3600 / (0.96 * chunk_seconds)))
    manifest, total = [], 0
    for i in range(count):
        seconds = chunk_seconds * rng.uniform(0.7, 1.3)
        audio = speech_chunk(seconds, source, rng)
        name = f"chunk-{i:05d}.wav"
        sf.write(directory / name, audio, RATE, subtype="PCM_16")
        kind = "end" if i == count - 1 else str(rng.choice(BREAKS, p=BREAK_ODDS))
        manifest.append((name, kind))
        total += audio.size
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return {"chunks": count, "source_seconds": round(total / RATE, 1)}


def concat(directory: Path, profile: bool) -> dict[str, Any]:
    """Join the chunks with the flow's defaults; time and memory of that alone."""
    from gpu_worker.wav import decode_wav
    from tasks.audio import AudioOptions, concatenate
    from tasks.loudness import LoudnessOptions

    baseline = rss_mb()
    manifest = json.loads((directory / "manifest.json").read_text())

    def chunks() -> Iterator[tuple[np.ndarray, int, Any]]:
        for name, kind in manifest:
            samples, rate = decode_wav((directory / name).read_bytes())
            yield samples, rate, kind

    options, loudness = AudioOptions(), LoudnessOptions(preset="audiobook")
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    placements = concatenate(chunks(), options, directory / "chapter.wav", loudness)
    if profiler:
        profiler.disable()
        report = io.StringIO()
        pstats.Stats(profiler, stream=report).sort_stats("tottime").print_stats(25)
        print(report.getvalue(), file=sys.stderr)
    return {
        "wall_seconds": round(time.perf_counter() - started, 2),
        "rss_after_imports_mb": round(baseline, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "placed_seconds": round(placements[-1].end + options.tail, 3),
        "cuts": sum(len(p.cuts) for p in placements),
        "gain_db_range": [min(p.gain_db for p in placements), max(p.gain_db for p in placements)],
    }


def verify(directory: Path, words: int) -> dict[str, Any]:
    """The flow's post-processing check of the whole chapter file."""
    from tasks.loudness import LoudnessOptions
    from tasks.verify import verify_audio

    baseline = rss_mb()
    started = time.perf_counter()
    check = verify_audio.fn(directory / "chapter.wav", words, LoudnessOptions().target)
    return {
        "wall_seconds": round(time.perf_counter() - started, 2),
        "rss_after_imports_mb": round(baseline, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "duration_seconds": check.duration_seconds,
        "integrated_lufs": check.integrated_lufs,
        "true_peak_dbtp": check.true_peak_dbtp,
        "loudness_ok": check.loudness_ok,
    }


def phase(name: str, directory: Path, *extra: str) -> dict[str, Any]:
    """Run one phase in a fresh interpreter; its figures are the last line it prints."""
    command = [sys.executable, __file__, "--phase", name, "--dir", str(directory), *extra]
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, check=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(figures: dict[str, Any]) -> None:
    joined, checked = figures["concat"], figures["verify"]
    hours = figures["chapter_seconds"] / 3600
    rows = [
        (
            "chunks (source audio)",
            f"{figures['chunks']} ({figures['source_seconds'] / 3600:.2f} h)",
        ),
        ("chapter duration", f"{figures['chapter_seconds']:.1f} s ({hours:.2f} h)"),
        ("placements say", f"{joined['placed_seconds']:.1f} s"),
        ("chapter file", f"{figures['chapter_bytes'] / 1e6:.1f} MB"),
        ("concatenate wall", f"{joined['wall_seconds']:.1f} s"),
        ("audio seconds per wall second", f"{figures['audio_per_wall_second']:.0f}"),
        ("concatenate RSS after imports", f"{joined['rss_after_imports_mb']:.0f} MB"),
        ("**concatenate peak RSS**", f"**{joined['peak_rss_mb']:.0f} MB**"),
        ("silences shortened by tighten", f"{joined['cuts']}"),
        ("chunk gains", "{:+.1f} to {:+.1f} dB".format(*joined["gain_db_range"])),
        ("verify_audio wall", f"{checked['wall_seconds']:.1f} s"),
        ("verify_audio RSS after imports", f"{checked['rss_after_imports_mb']:.0f} MB"),
        ("**verify_audio peak RSS**", f"**{checked['peak_rss_mb']:.0f} MB**"),
        (
            "verified loudness",
            f"{checked['integrated_lufs']} LUFS, {checked['true_peak_dbtp']} "
            f"dBTP, ok: {checked['loudness_ok']}",
        ),
        ("setup (writing the chunks)", f"{figures['setup_seconds']:.1f} s"),
    ]
    print(f"| concatenation, {hours:.1f} h chapter | value |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


def run(hours: float, chunk_seconds: float, profile: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="narrator-concat-") as scratch:
        directory = Path(scratch)
        started = time.perf_counter()
        made = phase(
            "setup", directory, "--hours", str(hours), "--chunk-seconds", str(chunk_seconds)
        )
        setup_seconds = time.perf_counter() - started
        joined = phase("concat", directory, *(["--profile"] if profile else []))
        chapter = directory / "chapter.wav"
        info, size = sf.info(str(chapter)), chapter.stat().st_size
        with chapter.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        words = round(made["source_seconds"] / 60 * WORDS_PER_MINUTE)
        checked = phase("verify", directory, "--words", str(words))
    duration = info.frames / info.samplerate
    if (
        abs(duration - joined["placed_seconds"]) > 2
        or abs(duration - checked["duration_seconds"]) > 2
    ):
        raise SystemExit(
            f"the chapter lasts {duration:.1f} s, but its placements say "
            f"{joined['placed_seconds']} s and verify_audio {checked['duration_seconds']} s"
        )
    return {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "hours": hours,
        "chunk_seconds": chunk_seconds,
        **made,
        "setup_seconds": round(setup_seconds, 1),
        "chapter_seconds": round(duration, 3),
        "chapter_bytes": size,
        "chapter_sha256": digest,  # the setup is seeded: equal digests, unchanged output
        "chapter_format": f"{info.samplerate} Hz, {info.channels} channel, {info.subtype}",
        "audio_per_wall_second": round(duration / joined["wall_seconds"], 1),
        "concat": joined,
        "verify": checked,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--chunk-seconds", type=float, default=15.0)
    parser.add_argument("--profile", action="store_true", help="cProfile the concatenation")
    parser.add_argument("--phase", choices=["setup", "concat", "verify"], help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--words", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:  # one phase, in its own process (see `phase`)
        if args.phase == "setup":
            print(json.dumps(setup(args.dir, args.hours, args.chunk_seconds)))
        elif args.phase == "concat":
            print(json.dumps(concat(args.dir, args.profile)))
        else:
            print(json.dumps(verify(args.dir, args.words)))
        return

    figures = run(args.hours, args.chunk_seconds, args.profile)
    table(figures)
    out = save("concat", figures)
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
