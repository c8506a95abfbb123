"""An ACX-ready package: what Audible's producer platform asks of an audiobook's files.

One MP3 per chapter (44.1 kHz, 192 kbps CBR, mono: tasks/encode.py's MP3), opening and
closing credits, a retail sample, and a report of ACX's checks measured on each MP3 as
decoded (what ACX measures): RMS between -23 and -18 dB, peak -3 dB or lower, noise floor
(quietest half second) -60 dB or lower, at most 120 minutes.

Each file gets room tone: `HEAD_S` at the head and `TAIL_S` at the tail (ACX: 0.5-1 s and
1-5 s). The engines' pauses are digital silence, so the room tone is a quiet noise
(`ROOM_TONE_DB`), not more silence: a file that drops to digital zero between every
sentence sounds gated, and ACX's reviewers reject it. Each file is then set to
`TARGET_RMS_DB` over its whole length (room tone included), the chapter limiter
(tasks/loudness.py) holding its peaks under `PEAK_CEILING_DB`; a file whose decoded MP3
still peaks over -3 dB is encoded again, quieter by the excess.
"""

import json
import math
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np
import soundfile as sf

from tasks.encode import encode
from tasks.loudness import AcxCheck, acx_check, dbfs, limit
from tasks.storage import output_stem

HEAD_S, TAIL_S = 0.75, 2.0
ROOM_TONE_DB = -72.0
TARGET_RMS_DB = -20.0
PEAK_CEILING_DB = -3.5  # 0.5 dB under ACX's -3 dB for what MP3 encoding adds
MAX_MINUTES = 120.0
SAMPLE_SECONDS = (60.0, 300.0)  # ACX: a retail sample of 1-5 minutes
SAMPLE_TARGET = 180.0
WINDOW_S = 0.5


@dataclass(frozen=True)
class FileCheck:
    file: str
    duration_seconds: float
    acx: AcxCheck
    duration_ok: bool
    problems: list[str]

    @property
    def passed(self) -> bool:
        return not self.problems


def room_tone(seconds: float, rate: int, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(round(seconds * rate))
    return (noise * 10 ** (ROOM_TONE_DB / 20)).astype(np.float32)


def mastered(audio: np.ndarray, rate: int, seed: int) -> np.ndarray:
    """`audio` with room tone at both ends (and in its digital silences), brought to the
    target RMS, its peaks held under the ceiling by the chapter limiter."""
    floor = room_tone(audio.size / rate, rate, seed)
    body = np.where(np.abs(audio) < 10 ** (ROOM_TONE_DB / 20), floor, audio)
    signal = np.concatenate(
        [room_tone(HEAD_S, rate, seed + 1), body, room_tone(TAIL_S, rate, seed + 2)]
    )
    for _ in range(3):  # the limiter takes back a little of each gain
        rms = dbfs(float(np.sqrt(np.mean(np.square(signal, dtype=np.float64)))))
        if abs(rms - TARGET_RMS_DB) < 0.5:
            break
        signal = limit(signal * 10 ** ((TARGET_RMS_DB - rms) / 20), rate, PEAK_CEILING_DB)
    return signal.astype(np.float32)


def _decoded(path: Path) -> Iterator[tuple[np.ndarray, int]]:
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            yield frame.to_ndarray().astype(np.float32).mean(axis=0), frame.sample_rate


def measure(path: Path) -> FileCheck:
    """ACX's figures for the file as it decodes."""
    total, squares, peak, quietest, rate = 0, 0.0, 0.0, math.inf, 0
    pending = np.zeros(0, np.float32)
    for samples, rate in _decoded(path):
        total += samples.size
        squares += float(np.sum(np.square(samples, dtype=np.float64)))
        peak = max(peak, float(np.max(np.abs(samples), initial=0.0)))
        pending = np.concatenate([pending, samples])
        window = int(WINDOW_S * rate)
        whole = pending[: pending.size // window * window].reshape(-1, window)
        if whole.size:
            quietest = min(quietest, float(np.sqrt(np.mean(whole**2, axis=1)).min()))
        pending = pending[whole.size :]
    duration = total / rate if rate else 0.0
    figures = acx_check(
        dbfs(math.sqrt(squares / total)) if total else -120.0,
        dbfs(peak),
        dbfs(quietest if math.isfinite(quietest) else 0.0),
    )
    problems = []
    if not figures.rms_ok:
        problems.append(f"RMS {figures.rms_dbfs} dB is outside -23 to -18 dB")
    if not figures.peak_ok:
        problems.append(f"peak {figures.peak_dbfs} dB is over -3 dB")
    if not figures.noise_floor_ok:
        problems.append(f"noise floor {figures.noise_floor_dbfs} dB is over -60 dB")
    duration_ok = duration <= MAX_MINUTES * 60
    if not duration_ok:
        problems.append(f"{duration / 60:.1f} minutes is over ACX's {MAX_MINUTES:.0f}")
    return FileCheck(path.name, round(duration, 3), figures, duration_ok, problems)


def write_mp3(audio: np.ndarray, rate: int, out: Path, title: str, seed: int) -> FileCheck:
    """`audio` mastered for ACX and encoded as its MP3 at `out`; its check."""
    signal = mastered(audio, rate, seed)
    with tempfile.TemporaryDirectory() as scratch:
        wav = Path(scratch) / "master.wav"
        for _ in range(3):
            sf.write(str(wav), signal, rate, subtype="FLOAT")
            encode(wav, out, "mp3", title, [])
            check = measure(out)
            if check.acx.peak_ok:
                break
            signal = signal * 10 ** ((-3.05 - check.acx.peak_dbfs) / 20)
    return check


def read_mono(wav: Path) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(str(wav), dtype="float32", always_2d=True)
    return audio.mean(axis=1), rate


def retail_sample(chapters: list[Path]) -> tuple[np.ndarray, int, float]:
    """About `SAMPLE_TARGET` seconds from the start of the first chapters (never the
    credits), faded out over its last second; and how much audio the book had for it."""
    pieces, rate, have = [], 0, 0.0
    for wav in chapters:
        audio, rate = read_mono(wav)
        pieces.append(audio[: round((SAMPLE_TARGET - have) * rate)])
        have += pieces[-1].size / rate
        if have >= SAMPLE_TARGET:
            break
    sample = np.concatenate(pieces)
    fade = min(sample.size, rate)
    sample[sample.size - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return sample, rate, have


def package(chapters: list[tuple[str, Path]], opening: Path, closing: Path, out: Path) -> dict:
    """Write the ACX package into `out`: the credits, one MP3 per (title, wav) chapter, named
    by position so they sort in reading order, the retail sample; return the report (also
    written as acx-report.json and .md)."""
    out.mkdir(parents=True, exist_ok=True)
    files = [("Opening credits", opening), *chapters, ("Closing credits", closing)]
    width = max(2, len(str(len(files))))
    named = [(output_stem(f"{i:0{width}d} {t[:60]}"), t, wav) for i, (t, wav) in enumerate(files)]
    checks = []
    for seed, (name, title, wav) in enumerate(named):
        audio, rate = read_mono(wav)
        checks.append(write_mp3(audio, rate, out / f"{name}.mp3", title, 1000 * seed))
    sample, rate, have = retail_sample([wav for _, wav in chapters])
    sample_check = write_mp3(sample, rate, out / "retail-sample.mp3", "Retail sample", 99)
    low, high = SAMPLE_SECONDS
    sample_note = (
        None
        if low <= sample_check.duration_seconds <= high
        else f"the book has {have:.0f} s of narration; ACX asks for a sample of 1-5 minutes"
    )
    report = {
        "files": [{**asdict(c), "passed": c.passed} for c in checks],
        "retail_sample": {
            **asdict(sample_check),
            "passed": sample_check.passed,
            "length_ok": sample_note is None,
            "note": sample_note,
        },
        "passed": all(c.passed for c in checks) and sample_check.passed,
    }
    (out / "acx-report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "acx-report.md").write_text(_markdown(checks, sample_check, sample_note))
    return report


def _markdown(checks: list[FileCheck], sample: FileCheck, note: str | None) -> str:
    rows = [
        f"| {c.file} | {c.duration_seconds / 60:.2f} | {c.acx.rms_dbfs} | {c.acx.peak_dbfs} | "
        f"{c.acx.noise_floor_dbfs} | {'pass' if c.passed else 'FAIL: ' + '; '.join(c.problems)} |"
        for c in [*checks, sample]
    ]
    lines = [
        "# ACX checks",
        "",
        "Measured on each MP3 as it decodes. ACX: RMS -23 to -18 dB, peak at most -3 dB, "
        "noise floor at most -60 dB, at most 120 minutes per file.",
        "",
        "| file | minutes | RMS dB | peak dB | noise floor dB | result |",
        "|---|---:|---:|---:|---:|---|",
        *rows,
    ]
    if note:
        lines += ["", f"Retail sample: {note}."]
    return "\n".join(lines) + "\n"
