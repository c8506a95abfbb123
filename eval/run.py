"""Narrate the evaluation corpus and print what a listener would check.

    .venv/bin/python eval/run.py                 # every text in eval/corpus, cold cache
    .venv/bin/python eval/run.py --write docs/QUALITY.md

Each text goes through the real flow with its default options. Per text: words, chunks,
audio length, wall time, chunk scores, chunks flagged below the threshold, the whole-chapter
check (WER of the finished audio re-heard, chunks it flagged and why), integrated loudness,
true peak and the ACX checks. The table is printed; --write also puts it in a file.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = (
    "| text | words | chunks | audio s | wall s | x real time | score mean / min "
    "| below threshold | chapter WER | check flagged | LUFS | dBTP | ACX |"
)


def narrate(source: Path, out: Path) -> dict:  # type: ignore[type-arg]
    from flows.chapter import narrate_chapter

    started = time.perf_counter()
    result = narrate_chapter(str(source), str(out), None)
    wall = time.perf_counter() - started
    meta = json.loads(Path(result.metadata).read_text())
    validation = json.loads((out / "validation.json").read_text())
    audio = meta["audio"]
    flags = {f["index"]: f["flags"] for f in validation["chunks"] if f["flags"]}
    return {
        "text": source.stem,
        "words": meta["source"]["words"],
        "chunks": result.chunks,
        "audio_s": result.duration_seconds,
        "wall_s": round(wall, 1),
        "realtime": round(result.duration_seconds / wall, 1),
        "mean_score": meta["totals"]["mean_score"],
        "min_score": meta["totals"]["min_score"],
        "below": meta["totals"]["flagged"],
        "wer": validation["wer"],
        "check_flags": flags,
        "lufs": audio["integrated_lufs"],
        "dbtp": audio["true_peak_dbtp"],
        "acx": all(audio["acx"][k] for k in ("rms_ok", "peak_ok", "noise_floor_ok")),
    }


def row(r: dict) -> str:  # type: ignore[type-arg]
    flags = "; ".join(f"{i}: {', '.join(f)}" for i, f in r["check_flags"].items()) or "none"
    return (
        f"| {r['text']} | {r['words']} | {r['chunks']} | {r['audio_s']:.1f} | "
        f"{r['wall_s']:.1f} | {r['realtime']:.1f} | {r['mean_score']:.1f} / "
        f"{r['min_score']:.1f} | {r['below'] or 'none'} | {100 * r['wer']:.1f} % | {flags} "
        f"| {r['lufs']:.1f} | {r['dbtp']:.1f} | {'pass' if r['acx'] else 'FAIL'} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "eval" / "corpus")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "eval")
    parser.add_argument("--write", type=Path, help="also write the table into this file")
    args = parser.parse_args()
    os.environ.setdefault("NARRATOR_CACHE_DIR", tempfile.mkdtemp(prefix="narrator-eval-"))
    results = [narrate(text, args.out / text.stem) for text in sorted(args.corpus.glob("*.md"))]
    words = sum(r["words"] for r in results)
    errors = sum(r["wer"] * r["words"] for r in results)
    lines = [
        HEADER,
        "|---" * 13 + "|",
        *map(row, results),
        f"| **all** | {words} | {sum(r['chunks'] for r in results)} | "
        f"{sum(r['audio_s'] for r in results):.1f} | {sum(r['wall_s'] for r in results):.1f}"
        f" | | | | {100 * errors / words:.1f} % | | | | |",
    ]
    table = "\n".join(lines)
    print(table)
    if args.write:
        stamp = (
            f"Measured {date.today().isoformat()} on {platform.machine()} with "
            f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, embedded engine "
            "(hibari) and Whisper tiny.en, default options (3 candidates, cold cache)."
        )
        args.write.write_text(
            args.write.read_text().replace("<!-- results -->", "").split("<!-- table -->")[0]
            + "<!-- table -->\n"
            + stamp
            + "\n\n"
            + table
            + "\n"
        )


if __name__ == "__main__":
    main()
