"""Where a dispatch loses time: one narrate_chapter run on the stand-in fleet, its jobs'
timeline split into worker-seconds left idle, round by round.

    python -m bench.timeline [--chunks 200] [--workers 20] [--latency const:2] [--buffer 5]

The endpoint records when each job was created, started, finished and first read back
(delivered). Replaying the starts onto W workers, a worker that is free while no job waits
is idle; that idle time is summed per round (a round: W jobs, in the order they started).
Round 0 is the ramp (jobs waiting for their task runs to start), round 1 shows how late the
first round's results were seen, the tail is workers done before the last job. Prints the
efficiency, the ramp, the delivery lag per round and the idle worker-seconds per round.
"""

import os
import tempfile

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="narrator-bench-prefect-"))

import argparse
import heapq
import statistics
from pathlib import Path
from typing import Any

from bench.dispatch import configure, ideal, makespan, run_flow
from bench.latency import RemoteFleet, chapter_text, latency_of
from tasks.text import ChunkingOptions, make_chunks


def rounds(jobs: list[dict[str, Any]], workers: int) -> dict[str, Any]:
    """Ramp, delivery lag and idle worker-seconds per round, from the jobs' timeline."""
    order = sorted(jobs, key=lambda j: j["started"])
    t0 = min(j["created"] for j in jobs)
    free = [0.0] * workers  # when each worker is next free, from t0
    idle: list[float] = []
    lag: list[list[float]] = []
    for k, job in enumerate(order):
        if k % workers == 0:
            idle.append(0.0)
            lag.append([])
        idle[-1] += max(0.0, job["started"] - t0 - heapq.heappop(free))
        heapq.heappush(free, job["finished"] - t0)
        lag[-1].append(job["delivered"] - job["finished"])
    last = max(free)
    return {
        "ramp_s": order[min(workers, len(order)) - 1]["started"] - t0,
        "lag_s": [(statistics.mean(r), max(r)) for r in lag],
        "idle_worker_s": idle,
        "tail_worker_s": sum(last - f for f in free),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument("--latency", default="const:2")
    parser.add_argument("--buffer", type=int, default=5, help="jobs queued beyond W")
    args = parser.parse_args()

    fleet = RemoteFleet(args.workers, args.latency)
    try:
        configure(fleet.url, args.workers, args.buffer)
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch)
            source = root / "chapter.md"
            source.write_text(chapter_text(args.chunks))
            texts = [c.text for c in make_chunks(source.read_text(), ChunkingOptions(), ())]
            run_flow(source, root / "out", root / "cache")
        timeline = fleet.timeline()
    finally:
        fleet.close()
    best = ideal([latency_of(t, args.latency) for t in texts], args.workers)
    split = rounds(timeline["jobs"], args.workers)
    span = makespan(timeline)
    print(f"\n{args.chunks} chunks x {args.workers} workers x {args.latency}: makespan "
          f"{span:.2f} s, ideal {best:.2f} s, efficiency {span / best:.3f}")  # fmt: skip
    print(f"the {args.workers}th job started {split['ramp_s']:.3f} s after the first\n")
    print("| round | idle worker-s | delivery lag mean / max s |")
    print("|---:|---:|---|")
    pairs = zip(split["idle_worker_s"], split["lag_s"], strict=True)
    for k, (idle, (mean, most)) in enumerate(pairs):
        print(f"| {k} | {idle:.2f} | {mean:.3f} / {most:.3f} |")
    print(f"| tail | {split['tail_worker_s']:.2f} | |")


if __name__ == "__main__":
    from flows.cli.common import prefect_console

    with prefect_console(verbose=True):  # the temporary server's settings, as the CLI's
        main()
