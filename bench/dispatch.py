"""Dispatch efficiency: how close the flow's generation phase comes to the fleet's limit.

    python -m bench.dispatch [--chunks 50,200] [--workers 5,20] [--latency const:2,const:8]

For every chapter size N, worker count W and latency spec L, the stand-in fleet
(bench/latency.py: the local RunPod endpoint, W slots that answer after the chunk's latency)
serves three dispatchers over the same chunks:

    flow         narrate_chapter with the RunPod backend: mapped tasks, the endpoint's
                 global concurrency limit, W + buffer jobs in flight (a real flow run)
    gather       asyncio.gather over /runsync with an asyncio.Semaphore(W + buffer): the
                 seeds' own design
    sequential   one /runsync after another (timed on --sequential-sample chunks and scaled
                 to N: the full loop takes N x L)

Makespan is first submission to last result delivered (the endpoint's own clock: when
each job was created and when a client first read its final status). Ideal is the best
schedule of the chunk latencies on W workers (for a constant latency, ceil(N / W) x L;
otherwise the longest-first schedule). Efficiency = makespan / ideal.

Then the cached rerun: the largest chapter of the last configuration again, same cache:
its wall time and endpoint calls against its cold run. Prints one table; writes the figures
as JSON to bench/results/.
"""

import os
import tempfile

# a Prefect database of its own: nothing left by earlier runs (task runs, leases) weighs on it
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="narrator-bench-prefect-"))

import argparse
import asyncio
import datetime
import heapq
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.latency import API_KEY, RemoteFleet, chapter_text, latency_of
from bench.record import save
from flows.chapter import NarrationOptions, narrate_chapter
from gpu_worker.schema import GenerateRequest, GenerationParams
from tasks.text import ChunkingOptions, make_chunks

OPTIONS = NarrationOptions(
    generation=GenerationParams(n_candidates=1, max_retries=0),
    formats=[],
    validate_chapter=False,
)


@dataclass
class Row:
    chunks: int
    workers: int
    latency: str
    dispatcher: str
    ideal_s: float
    makespan_s: float
    wall_s: float  # the whole run (a flow: text, generation, concatenation, reports)
    endpoint_calls: int

    @property
    def efficiency(self) -> float:
        return self.makespan_s / self.ideal_s


def ideal(latencies: list[float], workers: int) -> float:
    """Longest-first onto the least-loaded worker: exact for equal latencies."""
    loads = [0.0] * workers
    for latency in sorted(latencies, reverse=True):
        heapq.heapreplace(loads, loads[0] + latency)
    return max(loads)


def makespan(timeline: dict[str, Any]) -> float:
    jobs = timeline["jobs"]
    delivered = [j["delivered"] for j in jobs if j["delivered"] is not None]
    return float(max(delivered) - min(j["created"] for j in jobs))


def run_flow(source: Path, out: Path, cache: Path) -> float:
    os.environ["NARRATOR_CACHE_DIR"] = str(cache)
    started = time.perf_counter()
    narrate_chapter(str(source), str(out), None, OPTIONS)
    return time.perf_counter() - started


async def gather(url: str, requests: list[dict[str, object]], in_flight: int) -> None:
    semaphore = asyncio.Semaphore(in_flight)
    async with httpx.AsyncClient(
        headers={"authorization": f"Bearer {API_KEY}"}, timeout=600
    ) as client:

        async def one(request: dict[str, object]) -> None:
            async with semaphore:
                answer = await client.post(f"{url}/runsync?wait=300000", json={"input": request})
                assert answer.json()["status"] == "COMPLETED", answer.text[:200]

        await asyncio.gather(*(one(r) for r in requests))


def sequential(url: str, requests: list[dict[str, object]]) -> None:
    with httpx.Client(headers={"authorization": f"Bearer {API_KEY}"}, timeout=600) as client:
        for request in requests:
            answer = client.post(f"{url}/runsync?wait=300000", json={"input": request})
            assert answer.json()["status"] == "COMPLETED", answer.text[:200]


def configure(url: str, workers: int, buffer: int) -> None:
    os.environ.update(
        NARRATOR_BACKEND="runpod",
        NARRATOR_RUNPOD_ENDPOINT_ID="local",
        NARRATOR_RUNPOD_BASE_URL=f"{url}/v2",
        NARRATOR_RUNPOD_API_KEY=API_KEY,
        NARRATOR_RUNPOD_CONCURRENCY=str(workers + buffer),
        NARRATOR_ENDPOINT_LIMIT=f"bench-endpoint-{workers}",
    )


def measure(
    root: Path, chunks: int, workers: int, spec: str, args: argparse.Namespace
) -> list[Row]:
    source = root / f"chapter-{chunks}.md"
    source.write_text(chapter_text(chunks))
    texts = [c.text for c in make_chunks(source.read_text(), ChunkingOptions(), ())]
    assert len(texts) == chunks, f"{len(texts)} chunks, wanted {chunks}"
    requests = [
        GenerateRequest(text=t, **OPTIONS.generation.model_dump()).model_dump(mode="json")
        for t in texts
    ]
    best = ideal([latency_of(t, spec) for t in texts], workers)
    fleet = RemoteFleet(workers, spec)
    configure(fleet.url, workers, args.buffer)
    rows = []

    def row(dispatcher: str, wall: float, span: float | None = None) -> None:
        timeline = fleet.timeline()
        span = makespan(timeline) if span is None else span
        rows.append(Row(chunks, workers, spec, dispatcher, best, span, wall, timeline["requests"]))
        print(f"  {dispatcher:10s} makespan {span:7.2f} s  ideal {best:6.2f} s  "
              f"x{span / best:.3f}  wall {wall:6.1f} s", flush=True)  # fmt: skip
        fleet.reset()

    print(f"N={chunks} W={workers} L={spec}", flush=True)
    try:
        run = Path(tempfile.mkdtemp(prefix=f"{chunks}-{workers}-{spec}-", dir=root))
        out, cache = run / "out", run / "cache"  # a fresh cache for every run
        row("flow", run_flow(source, out, cache))
        started = time.perf_counter()
        asyncio.run(gather(f"{fleet.url}/v2/local", requests, workers + args.buffer))
        row("gather", time.perf_counter() - started)
        sample = requests[: args.sequential_sample]
        started = time.perf_counter()
        sequential(f"{fleet.url}/v2/local", sample)
        scaled = (time.perf_counter() - started) * chunks / len(sample)
        row(f"sequential ({len(sample)} of {chunks}, scaled)", scaled, scaled)
    finally:
        fleet.close()
    return rows


def rerun(root: Path, chunks: int, workers: int, spec: str, buffer: int) -> dict[str, float]:
    """Cold run, then the same chapter again on the same cache."""
    source = root / f"rerun-{chunks}.md"
    source.write_text(chapter_text(chunks))
    fleet = RemoteFleet(workers, spec)
    configure(fleet.url, workers, buffer)
    cache = root / "cache-rerun"
    try:
        cold = run_flow(source, root / "rerun-cold", cache)
        cold_calls = fleet.timeline()["requests"]
        warm = run_flow(source, root / "rerun-warm", cache)
        warm_calls = fleet.timeline()["requests"] - cold_calls
    finally:
        fleet.close()
    return {
        "chunks": chunks,
        "workers": workers,
        "cold_wall_s": round(cold, 2),
        "cold_endpoint_calls": cold_calls,
        "cached_wall_s": round(warm, 2),
        "cached_endpoint_calls": warm_calls,
        "cached_share": round(warm / cold, 3),
    }


def table(rows: list[Row], cached: dict[str, float] | None, latency: str) -> None:
    print("\n| chunks | workers | latency | dispatcher | ideal s | makespan s | efficiency |")
    print("|---:|---:|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r.chunks} | {r.workers} | {r.latency} | {r.dispatcher} | {r.ideal_s:.1f} | "
              f"{r.makespan_s:.1f} | {r.efficiency:.3f} |")  # fmt: skip
    if cached is None:
        return
    print(f"\n| cached rerun ({cached['chunks']} chunks, {cached['workers']} workers, "
          f"{latency}) | cold | cached |")  # fmt: skip
    print("|---|---:|---:|")
    print(f"| wall s | {cached['cold_wall_s']} | {cached['cached_wall_s']} "
          f"({100 * cached['cached_share']:.1f} %) |")  # fmt: skip
    print(f"| endpoint calls | {cached['cold_endpoint_calls']} | "
          f"{cached['cached_endpoint_calls']} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", default="50,200")
    parser.add_argument("--workers", default="5,20")
    parser.add_argument("--latency", default="const:2,const:8")
    parser.add_argument("--buffer", type=int, default=5, help="jobs queued beyond W")
    parser.add_argument("--sequential-sample", type=int, default=10)
    parser.add_argument("--rerun", default="200,20,const:8", help="N,W,latency, or none")
    parser.add_argument("--skip", default="", help="N,W,latency configurations to leave out (;)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each configuration")
    parser.add_argument("--suffix", default="", help="added to the results file's name")
    args = parser.parse_args()

    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        os.environ["NARRATOR_LOCAL_WORKERS"] = "1"
        for spec in args.latency.split(","):
            for workers in map(int, args.workers.split(",")):
                for chunks in map(int, args.chunks.split(",")):
                    if f"{chunks},{workers},{spec}" not in args.skip.split(";"):
                        for _ in range(args.repeat):
                            rows.extend(measure(root, chunks, workers, spec, args))
        cached = None
        if args.rerun != "none":
            n, w, spec = args.rerun.split(",")
            cached = rerun(root, int(n), int(w), spec, args.buffer)

    table(rows, cached, spec)
    figures = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "buffer": args.buffer,
        "rows": [{**asdict(r), "efficiency": round(r.efficiency, 4)} for r in rows],
        "cached_rerun": cached,
    }
    out = save("dispatch", figures, args.suffix)
    print(f"\nwritten to {out}")
    assert all(math.isfinite(r.efficiency) for r in rows)


if __name__ == "__main__":
    from flows.cli.common import prefect_console

    with prefect_console(verbose=True):  # the temporary server's settings, as the CLI's
        main()
