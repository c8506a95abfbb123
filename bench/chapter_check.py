"""The whole-chapter check (tasks/validation.py) on a long chapter: time and peak memory.

    python bench/chapter_check.py [--hours 0.17 3] [--chars N]

Narrates the bundled sample chapter once (embedded engine, 1 candidate, a scratch cache, no
chapter check), then for each length in --hours tiles that narration into a chapter of about
that many hours (the sample's WAV repeated, with its chunks and placements repeated on the
new clock) and runs `tasks.validation.validate` on it in a process of its own, with the
flow's validator (Whisper tiny.en, `CHECK_WORKERS` windows at once), so that each one's peak
RSS (VmHWM; ru_maxrss would carry the parent's peak across exec) is its own. Prints one table:
wall, audio seconds per wall second, peak RSS and RSS after loading the model, WER and chunks
flagged. Writes the figures as JSON to bench/results/.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from bench.record import save

SAMPLE = Path(__file__).parents[1] / "samples" / "the-keeper-of-lantern-rock.md"
GAP_S = 1.6  # silence between two copies of the chapter (a section pause)


def narrate(folder: Path, chars: int | None = None) -> Path:
    """The sample (its first `chars` characters) narrated once into folder/sample; returns
    its metadata.json."""
    from flows.chapter import NarrationOptions, narrate_chapter
    from gpu_worker.schema import GenerationParams

    os.environ["NARRATOR_CACHE_DIR"] = str(folder / "cache")
    options = NarrationOptions(
        generation=GenerationParams(n_candidates=1), formats=[], validate_chapter=False
    )
    source = folder / SAMPLE.name
    source.write_text(SAMPLE.read_text()[:chars])
    result = narrate_chapter(str(source), str(folder / "sample"), None, options)
    return Path(result.metadata)


def tile(metadata: Path, hours: float, folder: Path) -> Path:
    """The narration repeated to about `hours`; returns a JSON file naming the WAV and
    listing every chunk's text and placement on the long chapter's clock."""
    meta = json.loads(metadata.read_text())
    samples, rate = sf.read(str(metadata.parent / meta["audio"]["file"]), dtype="int16")
    length = samples.size / rate + GAP_S
    copies = max(1, round(hours * 3600 / length))
    wav = folder / f"chapter-{hours:g}h.wav"
    gap = np.zeros(int(GAP_S * rate), dtype=np.int16)
    with sf.SoundFile(str(wav), "w", rate, 1, "PCM_16", format="WAV") as out:
        for _ in range(copies):
            out.write(samples)
            out.write(gap)
    chunks = [
        {"text": c["text"], "start": c["start"] + k * length, "end": c["end"] + k * length}
        for k in range(copies)
        for c in meta["chunks"]
    ]
    plan = folder / f"chapter-{hours:g}h.json"
    plan.write_text(json.dumps({"wav": str(wav), "copies": copies, "chunks": chunks}))
    return plan


def peak_rss_mb() -> float:
    """This process's peak resident memory so far."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def check(plan_path: Path) -> None:
    """Child process: run the chapter check on the tiled chapter, print its figures as JSON."""
    from gpu_worker.settings import WorkerSettings
    from tasks.audio import Placement
    from tasks.text import Chunk
    from tasks.validation import CHECK_WORKERS, _validator, validate, windows

    plan = json.loads(plan_path.read_text())
    chunks = [
        Chunk(i, c["text"], "sentence", (0, len(c["text"])), c["text"])
        for i, c in enumerate(plan["chunks"])
    ]
    placements = [Placement(c["start"], c["end"]) for c in plan["chunks"]]
    validator = _validator(WorkerSettings())
    loaded = peak_rss_mb()
    started = time.perf_counter()
    result = validate(Path(plan["wav"]), chunks, placements, validator)
    wall = time.perf_counter() - started
    info = sf.info(plan["wav"])
    print(
        json.dumps(
            {
                "audio_seconds": round(info.frames / info.samplerate, 1),
                "copies": plan["copies"],
                "chunks": len(chunks),
                "windows": len(windows(placements)),
                "check_workers": CHECK_WORKERS,
                "wall_seconds": round(wall, 1),
                "audio_per_wall_second": round(info.frames / info.samplerate / wall, 1),
                "rss_after_model_mb": round(loaded),
                "peak_rss_mb": round(peak_rss_mb()),
                "wer": result.wer,
                "flagged": len(result.flagged),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, nargs="+", default=[0.17, 3.0])
    parser.add_argument("--chars", type=int, help="the sample's first N characters only")
    parser.add_argument("--check", type=Path, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.check:
        check(args.check)
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="narrator-bench-check-") as scratch:
        folder = Path(scratch)
        metadata = narrate(folder, args.chars)
        for hours in args.hours:
            plan = tile(metadata, hours, folder)
            child = subprocess.run(
                [sys.executable, "-m", "bench.chapter_check", "--check", str(plan)],
                check=True,
                capture_output=True,
                text=True,
            )
            rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
            Path(json.loads(plan.read_text())["wav"]).unlink()
    print(
        "| chapter | chunks | windows | at once | wall s | audio s / wall s "
        "| RSS after model MB | **peak RSS MB** | WER | flagged |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['audio_seconds'] / 3600:.2f} h ({r['copies']} × the sample) | {r['chunks']} | "
            f"{r['windows']} | {r['check_workers']} | {r['wall_seconds']} | "
            f"{r['audio_per_wall_second']} | {r['rss_after_model_mb']} | "
            f"**{r['peak_rss_mb']}** | {100 * r['wer']:.2f} % | {r['flagged']} |"
        )
    out = save("chapter-check", {"rows": rows})
    print(f"\nwritten {out}")


if __name__ == "__main__":
    from flows.cli.common import prefect_console

    with prefect_console(verbose=True):  # the temporary server's settings, as the CLI's
        main()
