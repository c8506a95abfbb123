"""Embedded CPU engine through the real flow: audio seconds per wall second, and where they go.

    python bench/embedded.py [--chars 1500] [--accept-score 100] [--workers 2]

Narrates the bundled sample chapter (or its first N characters, cut at a sentence end) with
`narrate_chapter` on the local backend: the embedded engine (hibari "heart") with Whisper
tiny.en validation, `--workers` chunks at once, a fresh chunk cache per run, no delivery
formats. Three runs: 1 candidate per chunk, 3 candidates, and 3 with early acceptance
(`accept_score`). A small warm-up narration first starts Prefect's temporary server and
loads the models, which every later run in the process shares; its time is reported apart.

Where the wall time goes: the whole-chapter check (`validate_chapter`, the validate-chapter
task) is its own column, and the speed columns leave it out: "× real time" is audio seconds
per wall second of everything else. Of that, synthesis and validation are the per-candidate
`synthesis_ms` and `validation_ms` the worker reports (metadata.json), summed and divided by
the workers (they run side by side); orchestration is the rest: text preparation, Prefect's
task runs, worker slots left idle, concatenation and post-processing. CPU busy is this
process's and the Prefect server's CPU time over wall time × cores; in brackets, the other
processes' share (the machine is shared, and a run beside other work is slower: trust runs
where it is near 0). Candidates skipped are those early acceptance did not make (rounds × N,
less those made). Writes the figures, per-chunk detail included, as JSON to bench/results/.
"""

import argparse
import datetime
import json
import os
import platform
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import psutil
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import TaskRun

from bench.record import save
from flows.chapter import NarrationOptions, narrate_chapter
from gpu_worker.schema import GenerationParams

SAMPLE = Path(__file__).parents[1] / "samples" / "the-keeper-of-lantern-rock.md"
WARM_UP_CHARS = 400  # a few chunks: enough for every worker to load its models
# task functions, as Prefect's task keys name them
TEXT_TASKS = {"prepare_text", "find_cached"}  # the text, and which chunks are cached
POST_TASKS = {"concatenate_chapter", "verify_audio", "encode_outputs", "write_reports",
              "publish_artifacts"}  # fmt: skip
CHECK_TASKS = {"validate_chapter"}
LAST_TASK = "publish_artifacts"


@dataclass(frozen=True)
class Config:
    label: str
    n_candidates: int
    accept_score: float | None = None

    def options(self) -> NarrationOptions:
        generation = GenerationParams(
            n_candidates=self.n_candidates, accept_score=self.accept_score
        )
        return NarrationOptions(generation=generation, formats=[], validate_chapter=True)


@dataclass(frozen=True)
class Run:
    wall: float
    cpu: float  # this process and the Prefect server
    others: float  # every other process on the machine: a busy machine skews the figures
    flow_run_id: UUID
    metadata: dict[str, Any]


def excerpt(chars: int | None, folder: Path) -> Path:
    """The sample, or its first `chars` characters cut at the last sentence end in them."""
    if chars is None:
        return SAMPLE
    text = SAMPLE.read_text()[:chars]
    ends = [m.end() for m in re.finditer(r"[.!?][\"”’)]*(?=\s|$)", text)]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "excerpt.md"
    path.write_text((text[: ends[-1]] if ends else text) + "\n")
    return path


def cpu_seconds() -> float:
    """CPU time of this process and its children (the temporary Prefect server) so far."""
    me = psutil.Process()
    processes = [me, *me.children(recursive=True)]
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def machine_busy() -> float:
    """CPU seconds every process on the machine has used so far (all cores)."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def narrate(source: Path, root: Path, name: str, options: NarrationOptions) -> Run:
    """One narration into root/name with a cache of its own: nothing comes from a cache."""
    os.environ["NARRATOR_CACHE_DIR"] = str(root / f"cache-{name}")
    cpu, machine, started = cpu_seconds(), machine_busy(), time.perf_counter()
    state = narrate_chapter(str(source), str(root / name), None, options, return_state=True)
    wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    others = max(0.0, machine_busy() - machine - cpu)
    result = state.result()
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    return Run(wall, cpu, others, flow_run_id, json.loads(Path(result.metadata).read_text()))


def function(run: TaskRun) -> str:
    """The task's function name (Prefect's task key is the name and a hash)."""
    return run.task_key.rsplit("-", 1)[0]


def task_runs(flow_run_id: UUID, chunks: int) -> list[TaskRun]:
    """The flow run's task runs, once the server has recorded every one of them finished."""
    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while True:
            runs: list[TaskRun] = []
            while len(page := client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                limit=200,
                offset=len(runs),
            )) > 0:  # fmt: skip
                runs.extend(page)
            names = [function(r) for r in runs]
            final = all(r.state is not None and r.state.is_final() for r in runs)
            if final and names.count("generate_chunk") >= chunks and LAST_TASK in names:
                return runs
            if time.monotonic() > deadline:
                raise RuntimeError(f"flow run {flow_run_id}: task runs not all recorded")
            time.sleep(0.5)


def task_seconds(runs: list[TaskRun], functions: set[str]) -> float:
    """Seconds spent running tasks of the named functions."""
    return sum(r.total_run_time.total_seconds() for r in runs if function(r) in functions)


def skipped(record: dict[str, Any], n_candidates: int) -> int:
    """Candidates a chunk's rounds did not make (early acceptance)."""
    return (record["retries"] + 1) * n_candidates - len(record["candidates"])


def split(run: Run, runs: list[TaskRun], workers: int) -> dict[str, float]:
    """The run's wall time in parts that add up to it (seconds)."""
    candidates = [c for r in run.metadata["chunks"] for c in r["candidates"]]
    check = task_seconds(runs, CHECK_TASKS)
    generation = run.wall - check
    synthesis = sum(c["synthesis_ms"] for c in candidates) / 1000 / workers
    validation = sum(c["validation_ms"] for c in candidates) / 1000 / workers
    text, post = task_seconds(runs, TEXT_TASKS), task_seconds(runs, POST_TASKS)
    return {
        "wall_seconds": run.wall,
        "chapter_check_seconds": check,
        "generation_wall_seconds": generation,
        "synthesis_seconds": synthesis,
        "validation_seconds": validation,
        "orchestration_seconds": generation - synthesis - validation,
        "text_seconds": text,
        "post_seconds": post,
        "prefect_and_idle_seconds": generation - synthesis - validation - text - post,
    }


def measure(config: Config, source: Path, root: Path, workers: int) -> dict[str, Any]:
    """Narrate once with `config`; the figures of the run, per-chunk detail included."""
    run = narrate(
        source, root, f"run-{config.n_candidates}-{config.accept_score}", config.options()
    )
    records = run.metadata["chunks"]
    seconds = split(run, task_runs(run.flow_run_id, len(records)), workers)
    audio = run.metadata["audio"]["duration_seconds"]
    scores = [r["best_score"] for r in records]
    validation = run.metadata["validation"]
    return {
        "label": config.label,
        "n_candidates": config.n_candidates,
        "accept_score": config.accept_score,
        "chunks": len(records),
        "audio_seconds": audio,
        **{name: round(value, 2) for name, value in seconds.items()},
        "realtime": round(audio / seconds["generation_wall_seconds"], 2),
        "realtime_with_check": round(audio / run.wall, 2),
        "cpu_busy": round(run.cpu / (run.wall * (os.cpu_count() or 1)), 3),
        "cpu_others": round(run.others / (run.wall * (os.cpu_count() or 1)), 3),
        "candidates_made": sum(len(r["candidates"]) for r in records),
        "candidates_skipped": sum(skipped(r, config.n_candidates) for r in records),
        "mean_best_score": round(sum(scores) / len(scores), 2),
        "min_best_score": min(scores),
        "flagged": [r["index"] for r in records if not r["passed"]],
        "chapter_wer": validation["wer"] if validation else None,
        "per_chunk": [
            {
                "index": r["index"],
                "audio_seconds": r["generated_seconds"],
                "scores": r["scores"],
                "synthesis_ms": [c["synthesis_ms"] for c in r["candidates"]],
                "validation_ms": [c["validation_ms"] for c in r["candidates"]],
                "retries": r["retries"],
            }
            for r in records
        ],
    }


def share(row: dict[str, Any], name: str) -> str:
    seconds = row[f"{name}_seconds"]
    return f"{seconds:.1f} ({100 * seconds / row['generation_wall_seconds']:.0f} %)"


def wer(row: dict[str, Any]) -> str:
    return "-" if row["chapter_wer"] is None else f"{100 * row['chapter_wer']:.1f} %"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| run | audio s | wall s (no chapter check) | × real time | synthesis s | validation s | "
        "orchestration s | chapter check s | × real time with check | candidates made | "
        "skipped | CPU busy (other processes) | mean / min score | chapter WER |",
        "|---|" + "---:|" * 13,
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['audio_seconds']:.1f} | {r['generation_wall_seconds']:.1f} | "
            f"**{r['realtime']:.2f}** | {share(r, 'synthesis')} | {share(r, 'validation')} | "
            f"{share(r, 'orchestration')} | {r['chapter_check_seconds']:.1f} | "
            f"{r['realtime_with_check']:.2f} | {r['candidates_made']} | "
            f"{r['candidates_skipped']} | {100 * r['cpu_busy']:.0f} % "
            f"({100 * r['cpu_others']:.0f} %) | "
            f"{r['mean_best_score']:.1f} / {r['min_best_score']:.1f} | {wer(r)} |"
        )
    lines += ["", "| run | orchestration s | text and cache lookup | post-processing | "
              "Prefect and idle slots |",
              "|---|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['orchestration_seconds']:.1f} | {r['text_seconds']:.1f} | "
            f"{r['post_seconds']:.1f} | {r['prefect_and_idle_seconds']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chars", type=int, default=None, help="first N characters only")
    parser.add_argument(
        "--accept-score", type=float, default=100.0, help="for the early-acceptance run"
    )
    parser.add_argument("--workers", type=int, default=2, help="NARRATOR_LOCAL_WORKERS")
    args = parser.parse_args()
    os.environ.update(
        NARRATOR_BACKEND="local",
        NARRATOR_ENGINE="embedded",
        NARRATOR_LOCAL_WORKERS=str(args.workers),
    )
    configs = [
        Config("N = 1", 1),
        Config("N = 3", 3),
        Config(f"N = 3, accept_score {args.accept_score:g}", 3, args.accept_score),
    ]
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        source = excerpt(args.chars, root)
        started = time.perf_counter()
        narrate(excerpt(WARM_UP_CHARS, root / "warm"), root, "warm-up", Config("", 1).options())
        warm_up = time.perf_counter() - started
        rows = [measure(config, source, root, args.workers) for config in configs]

    figures = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "source": SAMPLE.name if args.chars is None else f"{SAMPLE.name}[:{args.chars}]",
        "workers": args.workers,
        "warm_up_seconds": round(warm_up, 1),
        "runs": rows,
    }
    print(table(rows))
    print(f"\nwarm-up (Prefect's temporary server, models loading): {warm_up:.1f} s, not counted")
    out = save("embedded", figures, "" if args.chars is None else f"-{args.chars}chars")
    print(f"written to {out}")


if __name__ == "__main__":
    from flows.cli.common import prefect_console

    with prefect_console(verbose=True):  # the temporary server's settings, as the CLI's
        main()
