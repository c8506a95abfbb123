"""Fault drill: a chapter narrated through a misbehaving endpoint, against a clean run.

    python -m bench.reliability [--chunks 100] [--faults '{"rate": 0.2, "seed": 3}']

Serves the local RunPod-compatible endpoint (two worker slots, the embedded engine) on
127.0.0.1, narrates a chapter of one short paragraph per chunk through it fault-free, then
again with the fault drill (local_endpoint/faults.py) and a fresh cache. Prints one table:
faults injected by kind, endpoint jobs by outcome, chunk task retries, chunks lost, and
whether the faulted audio is identical to the clean audio. Writes the figures as JSON to
bench/results/.
"""

import argparse
import datetime
import json
import os
import platform
import tempfile
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

from bench.latency import serve
from bench.record import save
from flows.chapter import NarrationOptions, narrate_chapter
from gpu_worker.best_of_n import BestOfN
from gpu_worker.handler import handle
from gpu_worker.schema import GenerationParams
from gpu_worker.settings import WorkerSettings
from local_endpoint.faults import FaultProfile
from local_endpoint.server import Endpoint, EndpointConfig
from tasks.text import ChunkingOptions

OPTIONS = NarrationOptions(
    generation=GenerationParams(n_candidates=1, max_retries=0, seed=5),
    chunking=ChunkingOptions(target_chars=40, max_chars=80, min_chars=5),
    formats=[],
    validate_chapter=False,
)
NOUNS = ["harbour", "lantern", "gull", "tide", "rope", "anchor", "keel", "mast", "sail", "pier"]


def narrate(source: Path, out: Path, cache: Path) -> tuple[Any, float, dict[str, Any]]:
    os.environ["NARRATOR_CACHE_DIR"] = str(cache)
    started = time.perf_counter()
    result = narrate_chapter(str(source), str(out), None, OPTIONS)
    return result, time.perf_counter() - started, json.loads(Path(result.metadata).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--faults", default='{"rate": 0.2, "retry_after": 0.2, "seed": 3}')
    args = parser.parse_args()
    profile = FaultProfile.model_validate_json(args.faults)

    worker = BestOfN.load(WorkerSettings())
    endpoint = Endpoint(EndpointConfig(api_key="bench"), [partial(handle, worker=worker)] * 2)
    os.environ.update(
        NARRATOR_BACKEND="runpod",
        NARRATOR_RUNPOD_ENDPOINT_ID="local",
        NARRATOR_RUNPOD_BASE_URL=f"{serve(endpoint)}/v2",
        NARRATOR_RUNPOD_API_KEY="bench",
        NARRATOR_RUNPOD_CONCURRENCY="2",
        NARRATOR_RUNPOD_JOB_TIMEOUT="4",
        NARRATOR_CHUNK_RETRIES="8",
        NARRATOR_CHUNK_RETRY_DELAYS="[0.2, 0.5, 1]",
        NARRATOR_ENDPOINT_LIMIT="",
    )
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        source = root / "drill.md"
        lines = [f"{NOUNS[i % 10].title()} {NOUNS[i // 10 % 10]}." for i in range(args.chunks)]
        source.write_text("\n\n".join(lines) + "\n")
        clean, clean_s, _ = narrate(source, root / "clean", root / "cache-clean")
        endpoint.jobs.clear()
        endpoint.drill_faults(profile)
        faulted, faulted_s, metadata = narrate(source, root / "faulted", root / "cache-faulted")
        identical = Path(faulted.audio).read_bytes() == Path(clean.audio).read_bytes()

    jobs = Counter(job.status for job in endpoint.jobs.values())
    retries = sum(max(0, c["attempts"] - 1) for c in metadata["chunks"])
    figures = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "profile": profile.model_dump(),
        "chunks": args.chunks,
        "faults_injected": dict(sorted(endpoint.drill.injected.items())),
        "endpoint_jobs": dict(sorted(jobs.items())),
        "http_requests": endpoint.requests,
        "chunk_task_retries": retries,
        "chunks_lost": args.chunks - faulted.chunks,
        "audio_identical": identical,
        "clean_seconds": round(clean_s, 1),
        "faulted_seconds": round(faulted_s, 1),
    }
    print(f"| fault drill ({args.chunks} chunks, rate {profile.rate:g}) | value |")
    print("|---|---|")
    for kind, count in figures["faults_injected"].items():
        print(f"| injected: {kind} | {count} |")
    for status, count in figures["endpoint_jobs"].items():
        print(f"| endpoint jobs {status} | {count} |")
    for name in ("chunk_task_retries", "chunks_lost", "audio_identical", "clean_seconds",
                 "faulted_seconds"):  # fmt: skip
        print(f"| {name.replace('_', ' ')} | {figures[name]} |")
    out = save("reliability", figures)
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    from flows.cli.common import prefect_console

    with prefect_console(verbose=True):  # the temporary server's settings, as the CLI's
        main()
