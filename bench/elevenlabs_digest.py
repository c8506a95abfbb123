"""An ElevenLabs digest through the real flow, against the local stand-in: wall time beside
the ideal, in parallel and one request at a time (seed 002's pipeline).

    python bench/elevenlabs_digest.py [--chunks 8] [--latency 4] [--concurrency 5]

The stand-in (local_endpoint/elevenlabs.py, on 127.0.0.1) answers each request no sooner
than `--latency` seconds, with real speech from the embedded engine, and refuses requests
beyond its plan's concurrency as ElevenLabs does. The digest has `--chunks` stories, one
chunk each. Two runs, each with a fresh chunk cache and the flow's defaults for this backend
(1 candidate, Whisper tiny.en hearing every take, no delivery formats, no whole-chapter
check): at the plan's concurrency, and at 1. Ideal = ceil(chunks / concurrency) x latency;
overhead = wall - ideal (text preparation, Prefect's task runs, hearing each take, joining,
reports). A warm-up narration first (Prefect's temporary server, Whisper loading) is
reported apart. Writes the figures to bench/results/.
"""

import argparse
import math
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import SecretStr

from bench.record import save
from flows.chapter import NarrationOptions, narrate_chapter
from flows.services import configured
from gpu_worker.schema import GenerationParams
from local_endpoint.elevenlabs import FakeElevenLabs
from tasks.settings import NarratorSettings

KEY = "xi-bench-key"
VOICE = "narrator-id"
STORIES = [
    "The harbour council met on Monday and agreed to repair the old sea wall before winter.",
    "A fishing boat came home late after its engine failed ten miles out in calm water.",
    "The library will open on Sundays from next month, with a reading hour for children.",
    "Roadworks on the coast road begin next week and will last until the end of March.",
    "The school choir won first prize at the county festival with a song about the tide.",
    "Volunteers planted three hundred trees along the river path over the weekend.",
    "The ferry timetable changes on Friday, with an extra crossing every evening.",
    "Tomorrow will be dry and bright, with a light wind from the west and cool nights.",
]
OPTIONS = NarrationOptions(
    generation=GenerationParams(n_candidates=1), validate_chapter=False, formats=[]
)


def digest(folder: Path, chunks: int) -> Path:
    """`chunks` stories, one paragraph (one chunk) each; no heading."""
    stories = [STORIES[i % len(STORIES)] for i in range(chunks)]
    stories = [
        s if i < len(STORIES) else f"In other news, {s[0].lower()}{s[1:]}"
        for i, s in enumerate(stories)
    ]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "digest.md"
    path.write_text("\n\n".join(stories) + "\n")
    return path


def serve(app: Any) -> str:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


def narrate(fake: FakeElevenLabs, url: str, source: Path, out: Path, concurrency: int) -> float:
    fake.concurrency = concurrency
    settings = NarratorSettings(
        backend="elevenlabs",
        elevenlabs_base_url=url,
        elevenlabs_api_key=SecretStr(KEY),
        elevenlabs_concurrency=concurrency,
        cache_dir=str(out / "cache"),
    )
    started = time.perf_counter()
    with configured(settings=settings):
        narrate_chapter(str(source), str(out / "audio"), VOICE, OPTIONS)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--latency", type=float, default=4.0, help="seconds per request")
    parser.add_argument("--concurrency", type=int, default=5, help="the plan's")
    args = parser.parse_args()
    fake = FakeElevenLabs(key=KEY, voices={VOICE: "heart"}, latency=args.latency)
    url = serve(fake.app)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        started = time.perf_counter()
        narrate(fake, url, digest(root / "warm", 1), root / "warm", args.concurrency)
        warm_up = time.perf_counter() - started
        source = digest(root / "digest", args.chunks)
        for name, concurrency in (("parallel", args.concurrency), ("sequential", 1)):
            before = len(fake.received)
            wall = narrate(fake, url, source, root / name, concurrency)
            asked = fake.received[before:]
            ideal = math.ceil(args.chunks / concurrency) * args.latency
            rows.append(
                {
                    "run": name,
                    "concurrency": concurrency,
                    "chunks": args.chunks,
                    "wall_s": round(wall, 2),
                    "ideal_s": round(ideal, 2),
                    "wall_over_ideal": round(wall / ideal, 3),
                    "overhead_s": round(wall - ideal, 2),
                    "peak_in_flight": max(r.in_flight for r in asked),
                    "requests": len(asked),
                    "refused_429": sum(r.status == 429 for r in asked),
                }
            )
    print(
        "| run | plan | chunks | wall s | ideal s | wall / ideal | overhead s "
        "| peak in flight | requests (429) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['run']} | {r['concurrency']} | {r['chunks']} | {r['wall_s']:.1f} | "
            f"{r['ideal_s']:.1f} | {r['wall_over_ideal']:.2f} | {r['overhead_s']:.1f} | "
            f"{r['peak_in_flight']} | {r['requests']} ({r['refused_429']}) |"
        )
    speedup = rows[1]["wall_s"] / rows[0]["wall_s"]
    print(
        f"\nparallel: {speedup:.1f}x the sequential pipeline; warm-up {warm_up:.1f} s, not counted"
    )
    figures = {"latency_s": args.latency, "warm_up_s": round(warm_up, 1), "runs": rows}
    print(f"written to {save('elevenlabs_digest', figures)}")


if __name__ == "__main__":
    from flows.cli.common import prefect_console

    with prefect_console(verbose=True):  # the temporary server's settings, as the CLI's
        main()
