"""Prefect's cost: what orchestration adds per chunk, and what a nightly batch does to a server.

    python -m bench.prefect_load [--chunks 200] [--chapters 10] [--workers 20] [--latency const:0]
                                 [--postgres]

Starts a real Prefect server (`prefect server start` on 127.0.0.1, SQLite in a temporary
PREFECT_HOME or, with --postgres, a PostgreSQL cluster of its own: flows/postgres.py;
uvicorn's access log on so every API call is counted) and the stand-in GPU fleet
(bench/latency.py: the local RunPod endpoint, --workers slots answering after --latency) in
processes of their own, then a flow process (this script again, configured by environment
variables as a deployed flow run is: PREFECT_API_URL, NARRATOR_BACKEND=runpod, ...) that
runs, one after another:

  (a) per chunk, --chunks items each:
      backend only     RunPod backend `generate` from 32 threads, no Prefect: the HTTP floor
      bare task        a flow mapping a @task that does nothing
      bare + persist   the same task with what generate_chunk asks of Prefect: a cache key,
                       a persisted result the size of a chunk's WAV, two log lines
      chapter          narrate_chapter (NARRATOR_ENDPOINT_LIMIT off, then on as deployed):
                       the real mapped generate_chunk, formats=[], validate_chapter=False
  (b) a nightly batch: narrate_batch over --chapters chapters of --chunks chunks each.

For each run: wall, the span of its per-chunk task runs as the server recorded them, CPU of
the flow process, of the server and of the fleet (sampled every 0.5 s), the server's peak CPU
and RSS, API calls by route and status, the server's exceptions, the client's retries and
warnings, and how long after the flow returned the server had recorded every task run. Prints
the tables and the busiest API routes; writes the figures as JSON to bench/results/.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from prefect import flow, get_run_logger, task
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

from bench.latency import API_KEY, CHARS_PER_SECOND, RATE, RemoteFleet, chapter_text
from bench.prefect_harness import (
    ClientLog,
    Meter,
    api_calls,
    chunk_span,
    free_port,
    start_server,
    stop,
    task_runs,
    wait_recorded,
)
from bench.record import save
from flows import postgres
from flows.batch import narrate_batch
from flows.chapter import NarrationOptions, narrate_chapter
from gpu_worker.schema import GenerateRequest, GenerationParams
from gpu_worker.settings import WorkerSettings
from tasks.backends import open_backend
from tasks.settings import NarratorSettings
from tasks.text import ChunkingOptions, make_chunks

THREADS = 32  # as flows/chapter.py's task runner (MAX_TASK_THREADS)
GENERATION = GenerationParams(n_candidates=1, max_retries=0)
OPTIONS = NarrationOptions(generation=GENERATION, formats=[], validate_chapter=False)


@dataclass
class Bench:
    """Runs things one after another in the flow process; notes what the server saw of each."""

    api: str
    server_log: Path
    client_log: ClientLog
    scratch: Path
    rows: list[dict[str, Any]] = field(default_factory=list)

    def measure(self, name: str, chunks: int, run: Callable[[], Any]) -> None:
        offset, retries = self.server_log.stat().st_size, Counter(self.client_log.retries)
        warnings, examples = Counter(self.client_log.warnings), len(self.client_log.examples)
        started = time.time()
        outcome = run()
        ended = time.time()
        caught_up = wait_recorded(self.api, started)
        tasks = task_runs(started)
        span = chunk_span(tasks)
        self.rows.append(
            {
                "run": name,
                "chunks": chunks,
                "outcome": outcome,
                "wall_s": round(ended - started, 2),
                "chunk_phase_s": round(span[1] - span[0], 2) if span else round(ended - started, 2),
                "first_chunk_after_s": round(span[0] - started, 2) if span else None,
                "server_caught_up_s": round(max(0.0, caught_up - ended), 1),
                "task_runs": tasks["count"],
                "task_groups": tasks["groups"],
                "api_calls": api_calls(self.server_log, offset),
                "client_retries": dict(self.client_log.retries - retries),
                "client_warnings": dict(self.client_log.warnings - warnings),
                "client_warning_examples": self.client_log.examples[examples:],
                "times": {
                    "started": started,
                    "ended": ended,
                    "caught_up": time.time(),
                    "span": span,
                },
            }
        )
        print(f"  {name}: {ended - started:.1f} s", file=sys.stderr, flush=True)


@task(name="bare-noop")
def noop(index: int) -> int:
    return index


@task(name="bare-persisted", cache_key_fn=lambda _, p: f"bare-{p['index']}", persist_result=True)
def persisted(index: int, size: int) -> bytes:
    logger = get_run_logger()
    logger.info("chunk %d: starting", index)
    audio = np.random.default_rng(index).bytes(size)
    logger.info("chunk %d: %d bytes", index, size)
    return audio


@flow(name="bench-bare", task_runner=ThreadPoolTaskRunner(max_workers=THREADS))  # type: ignore[arg-type]
def bare(chunks: int, size: int, storage: str | None) -> int:
    """Map a task that does nothing (or, with `storage`, one that persists `size` bytes)."""
    futures: Any = (
        noop.map(range(chunks))
        if storage is None
        else persisted.with_options(result_storage=Path(storage)).map(range(chunks), size)
    )
    wait(futures)
    return sum(f.state.is_completed() for f in futures)


def backend_only(texts: list[str]) -> int:
    """Every chunk through the RunPod backend from THREADS threads, no Prefect at all."""
    backend = open_backend(NarratorSettings(), WorkerSettings())
    requests = [GenerateRequest(text=t, **GENERATION.model_dump()) for t in texts]
    with ThreadPoolExecutor(THREADS) as pool:
        return sum(r.passed for r in pool.map(backend.generate, requests))


def chapter(source: Path, cache: Path) -> str:
    os.environ["NARRATOR_CACHE_DIR"] = str(cache)
    return outcome(
        narrate_chapter(str(source), str(cache.parent / "out"), None, OPTIONS, return_state=True)
    )


def batch(folder: Path, cache: Path, in_flight: int) -> str:
    os.environ["NARRATOR_CACHE_DIR"] = str(cache)
    out = str(cache.parent / "out")
    return outcome(
        narrate_batch(str(folder), out, "*.md", None, OPTIONS, in_flight, return_state=True)
    )


def outcome(state: Any) -> str:
    """A flow run's final state, and why when it failed."""
    return str(state.name) if state.is_completed() else f"{state.name}: {state.message}"


def write_chapters(folder: Path, chapters: int, chunks: int) -> list[str]:
    """`chapters` chapter files of `chunks` chunks each, no two chunks alike (no cache hits)."""
    folder.mkdir(parents=True)
    text = chapter_text(chunks)
    for c in range(1, chapters + 1):
        (folder / f"ch-{c:02d}.md").write_text(text.replace("The keeper", f"Keeper {c}"))
    return [c.text for c in make_chunks(text, ChunkingOptions(), ())]


def run_all(bench: Bench, args: argparse.Namespace) -> None:
    root = bench.scratch
    texts = write_chapters(root / "chapters", args.chapters, args.chunks)
    source = root / "chapters" / "ch-01.md"
    size = int(np.mean([max(0.5, len(t) / CHARS_PER_SECOND) for t in texts]) * RATE * 2)
    os.environ["NARRATOR_ENDPOINT_LIMIT"] = ""  # no Prefect at all
    bench.measure("backend only (no Prefect)", len(texts), lambda: backend_only(texts))
    bench.measure("bare task", args.chunks, lambda: bare(args.chunks, size, None))
    bench.measure(
        "bare + cache key, persisted result, 2 logs",
        args.chunks,
        lambda: bare(args.chunks, size, str(root / "bare-cache")),
    )
    bench.measure(
        "narrate_chapter, no endpoint limit",
        len(texts),
        lambda: chapter(source, root / "a-nolimit" / "cache"),
    )
    os.environ["NARRATOR_ENDPOINT_LIMIT"] = "runpod-endpoint"
    bench.measure(
        "narrate_chapter (as deployed)", len(texts), lambda: chapter(source, root / "a" / "cache")
    )
    bench.measure(
        f"narrate_batch, {args.chapters} chapters, {args.in_flight} in flight",
        args.chapters * len(texts),
        lambda: batch(root / "chapters", root / "b" / "cache", args.in_flight),
    )


def per_chunk(row: dict[str, Any], key: str) -> float:
    """Milliseconds per chunk: of the chunk phase (wall); of the flow process's CPU in it; of
    the server's CPU above idle from the run's start until it had recorded everything (the
    server ingests events and logs after the fact)."""
    if key == "wall":
        return 1000 * row["chunk_phase_s"] / row["chunks"]
    if key == "server":
        return 1000 * row["server_above_idle_cpu_s"] / row["chunks"]
    figures = row.get("client_chunk_phase") or row["client"]
    return 1000 * float(figures["cpu_s"]) / row["chunks"]


def table_a(rows: list[dict[str, Any]]) -> None:
    print("| run | chunks | wall s | first chunk after s | chunk phase s | ms/chunk | client "
          "CPU ms/chunk | server CPU ms/chunk | API calls/chunk | task runs |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        failed = isinstance(r["outcome"], str) and r["outcome"] != "Completed"
        name = f"{r['run']} **failed**" if failed else r["run"]
        first = "" if r["first_chunk_after_s"] is None else f"{r['first_chunk_after_s']:.1f}"
        print(f"| {name} | {r['chunks']} | {r['wall_s']:.1f} | {first} | {r['chunk_phase_s']:.1f} "
              f"| {per_chunk(r, 'wall'):.1f} | {per_chunk(r, 'client'):.1f} "
              f"| {per_chunk(r, 'server'):.1f} | {r['api_calls']['total'] / r['chunks']:.1f} "
              f"| {r['task_runs']} |")  # fmt: skip


def table_cost(rows: list[dict[str, Any]]) -> None:
    """Where a chunk's time goes: each layer as the difference between two runs above (wall
    is chunk phase / chunks, a throughput figure; CPU adds up, wall only roughly)."""
    backend, floor, persisted, free, limited = rows
    layers = [
        ("the backend alone (HTTP, decode; no Prefect)", [backend]),
        ("Prefect's floor: one mapped task that does nothing", [floor]),
        ("+ cache key, persisted result, 2 log lines", [persisted, floor]),
        ("+ narrate_chapter's own per chunk, backend included", [free, persisted]),
        ("+ the endpoint's global concurrency limit", [limited, free]),
    ]
    print(
        "\n| what a chunk costs | wall ms | client CPU ms | server CPU ms |\n|---|---:|---:|---:|"
    )
    for name, (r, *base) in layers:
        cells = [per_chunk(r, k) - sum(per_chunk(b, k) for b in base) for k in KEYS]
        print(
            f"| {name} | " + " | ".join(f"{c:+.1f}" if base else f"{c:.1f}" for c in cells) + " |"
        )


KEYS = ("wall", "client", "server")


def table_b(r: dict[str, Any]) -> None:
    calls, server = r["api_calls"], r["server"]
    chunk_task: dict[str, Any] = next(iter(r["task_groups"].values()), {})
    values = {
        "outcome": str(r["outcome"])[:300].replace("|", "/"),
        "wall s": r["wall_s"],
        "chunks per second": round(r["chunks"] / r["wall_s"], 1),
        "task runs recorded (per second)": f"{r['task_runs']} ({r['task_runs'] / r['wall_s']:.1f})",
        "chunk task, mean Running to Completed s": (chunk_task.get("mean_run_ms") or 0) / 1000,
        "server CPU s (above idle)": f"{server['cpu_s']} ({r['server_above_idle_cpu_s']})",
        "server mean / peak CPU % (one core = 100)": f"{server['mean_cpu_pct']} / "
        f"{server['peak_cpu_pct']}",
        "server peak RSS MB": server["peak_rss_mb"],
        "flow process CPU s, mean / peak %": f"{r['client']['cpu_s']}, "
        f"{r['client']['mean_cpu_pct']} / {r['client']['peak_cpu_pct']}",
        "fleet CPU s": r["fleet"]["cpu_s"],
        "API calls": calls["total"],
        "API calls by status": ", ".join(f"{k}: {v}" for k, v in calls["by_status"].items()),
        "API calls refused, by route": ", ".join(f"{k}: {v}" for k, v in calls["refused"].items()),
        "server exceptions": "; ".join(f"{k} ×{v}" for k, v in calls["server_exceptions"].items()),
        "client retries by status": r["client_retries"] or 0,
        "client warnings": sum(r["client_warnings"].values()),
        "server had every task run, s after the flow": r["server_caught_up_s"],
    }
    print(f"| {r['run']}: {r['chunks']} chunks | value |\n|---|---:|")
    for name, value in values.items():
        print(f"| {name} | {value} |")


def routes(row: dict[str, Any]) -> None:
    busiest = ", ".join(f"{route} {n}" for route, n in row["api_calls"]["routes"].items())
    print(f"\nBusiest API routes, {row['run']} ({row['chunks']} chunks): {busiest}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=200, help="chunks per chapter")
    parser.add_argument("--chapters", type=int, default=10, help="chapters in the batch")
    parser.add_argument("--workers", type=int, default=20, help="fleet slots = jobs in flight")
    parser.add_argument("--latency", default="const:0", help="const:S or lognormal:MEDIAN:SIGMA")
    parser.add_argument("--in-flight", type=int, default=2, help="batch chapters at once")
    parser.add_argument("--postgres", action="store_true", help="the server on PostgreSQL")
    parser.add_argument("--client", type=Path, help=argparse.SUPPRESS)  # the flow process
    args = parser.parse_args()
    if args.client:
        flow_process(args)
    else:
        report(harness(args), args)


def harness(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Server, fleet and this script again as the flow process (its own interpreter, its
    settings from the environment as a deployed flow's are), all sampled from here."""
    with tempfile.TemporaryDirectory(prefix="prefect-load-") as scratch:
        root = Path(scratch)
        database = None
        if args.postgres:
            database = postgres.start(root / "postgres", free_port(), root / "postgres.log")
        server, api = start_server(root / "server", database.url if database else None)
        fleet = RemoteFleet(args.workers, args.latency)
        env = {
            **os.environ,
            "PREFECT_API_URL": api,
            "PREFECT_HOME": str(root / "client"),
            "NARRATOR_BACKEND": "runpod",
            "NARRATOR_RUNPOD_ENDPOINT_ID": "local",
            "NARRATOR_RUNPOD_BASE_URL": f"{fleet.url}/v2",
            "NARRATOR_RUNPOD_API_KEY": API_KEY,
            "NARRATOR_RUNPOD_CONCURRENCY": str(args.workers),
        }
        command = [sys.executable, "-m", "bench.prefect_load", *sys.argv[1:], "--client", scratch]
        client = subprocess.Popen(command, env=env, cwd=Path(__file__).parent.parent)
        meter = Meter({"client": client.pid, "server": server.pid, "fleet": fleet.process.pid})
        meter.start()
        try:
            if client.wait() != 0:
                raise RuntimeError(f"the flow process failed ({client.returncode})")
            rows: list[dict[str, Any]] = json.loads((root / "rows.json").read_text())
        finally:
            meter.done.set()
            fleet.close()
            stop(server)
            if database is not None:
                database.stop()
    # the server's own loops (scheduler, event services) while the flow process starts
    idle = meter.between("server", meter.samples[0][0], rows[0]["times"]["started"])
    for row in rows:
        t = row.pop("times")
        row["client"] = meter.between("client", t["started"], t["ended"])
        row["server"] = meter.between("server", t["started"], t["caught_up"])
        row["server_idle_cpu_pct"] = idle["mean_cpu_pct"]
        row["server_above_idle_cpu_s"] = round(
            row["server"]["cpu_s"] - idle["mean_cpu_pct"] / 100 * (t["caught_up"] - t["started"]),
            2,
        )
        row["fleet"] = meter.between("fleet", t["started"], t["ended"])
        if t["span"]:  # CPU inside the chunk phase alone
            row["client_chunk_phase"] = meter.between("client", *t["span"])
    return rows


def flow_process(args: argparse.Namespace) -> None:
    root = args.client
    with ClientLog().installed() as client_log:
        bench = Bench(
            os.environ["PREFECT_API_URL"], root / "server" / "server.log", client_log, root
        )
        run_all(bench, args)
    (root / "rows.json").write_text(json.dumps(bench.rows))


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    figures = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}",
        "prefect": version("prefect"),
        "server": f"prefect server start, {'PostgreSQL' if args.postgres else 'SQLite'}, "
        "127.0.0.1, access log on",
        "arguments": {k: v for k, v in vars(args).items() if k != "client"},
        "runs": rows,
    }
    print(f"\n(a) per chunk: {args.chunks} chunks, {args.workers} fleet slots, latency "
          f"{args.latency}, {THREADS} task threads\n")  # fmt: skip
    table_a(rows[:-1])
    table_cost(rows[:-1])
    routes(rows[-2])
    print(f"\n(b) nightly batch on a real server, {args.workers} fleet slots, latency "
          f"{args.latency}\n")  # fmt: skip
    table_b(rows[-1])
    routes(rows[-1])
    out = save("prefect-postgres" if args.postgres else "prefect", figures)
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
