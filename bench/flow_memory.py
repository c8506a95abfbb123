"""A long chapter through the real flow: peak memory of the flow process, cold and rerun.

    python -m bench.flow_memory [--hours 3] [--workers 20]

The stand-in fleet (bench/latency.py: the local RunPod endpoint, `--workers` slots, latency 0,
real speech-shaped audio at ~15 characters per second) serves a chapter of about `--hours`
of audio. `narrate_chapter` runs twice in child processes of their own, so that each one's
peak RSS (VmHWM of the flow process; the temporary Prefect server is another process) is
its own: cold (an empty chunk cache) and a rerun (every chunk cached). No whole-chapter
check (bench/chapter_check.py measures it) and no mp3/m4b. Prints one table; writes the
figures as JSON to bench/results/.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.chapter_check import peak_rss_mb
from bench.latency import CHARS_PER_SECOND, chapter_text, fleet, serve
from bench.record import save


def run(source: Path, out: Path) -> None:
    """Child process: narrate `source` into `out`, print the figures as JSON."""
    from flows.chapter import NarrationOptions, narrate_chapter

    started = time.perf_counter()
    result = narrate_chapter(
        str(source), str(out), None, NarrationOptions(formats=[], validate_chapter=False)
    )
    print(
        json.dumps(
            {
                "wall_seconds": round(time.perf_counter() - started, 1),
                "chunks": result.chunks,
                "cache_hits": result.cache_hits,
                "audio_seconds": round(result.duration_seconds, 1),
                "peak_rss_mb": round(peak_rss_mb()),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run(*args.child)
        return
    url = serve(fleet(args.workers, "const:0"))
    rows = {}
    with tempfile.TemporaryDirectory(prefix="narrator-bench-memory-") as scratch:
        root = Path(scratch)
        per_chunk = 150 / CHARS_PER_SECOND  # a paragraph of ~150 characters
        source = root / "long.md"
        source.write_text(chapter_text(round(args.hours * 3600 / per_chunk)))
        env = {
            **os.environ,
            "NARRATOR_BACKEND": "runpod",
            "NARRATOR_RUNPOD_ENDPOINT_ID": "local",
            "NARRATOR_RUNPOD_BASE_URL": f"{url}/v2",
            "NARRATOR_RUNPOD_API_KEY": "bench",
            "NARRATOR_RUNPOD_CONCURRENCY": str(args.workers + 5),
            "NARRATOR_ENDPOINT_LIMIT": "bench-memory",
            "NARRATOR_CACHE_DIR": str(root / "cache"),
        }
        for name in ("cold", "rerun"):
            child = subprocess.run(
                [sys.executable, "-m", "bench.flow_memory", "--child", source, root / "out"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            rows[name] = json.loads(child.stdout.strip().splitlines()[-1])
    print("| run | chunks | from cache | audio h | wall s | **flow process peak RSS MB** |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['chunks']} | {r['cache_hits']} | {r['audio_seconds'] / 3600:.2f} | "
            f"{r['wall_seconds']} | **{r['peak_rss_mb']}** |"
        )
    out = save("flow-memory", {"workers": args.workers, "rows": rows})
    print(f"\nwritten {out}")


if __name__ == "__main__":
    from flows.cli.common import prefect_console

    with prefect_console(verbose=True):  # the temporary server's settings, as the CLI's
        main()
