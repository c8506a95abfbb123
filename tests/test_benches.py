"""Every benchmark runs as its docstring says (`python bench/NAME.py`), at its smallest size:
a bench broken by a change is a red suite, not a surprise at measuring time. What they
measure is in docs/PERFORMANCE.md; here only that each runs, prints its table and writes its
figures."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]

SMALLEST = {
    "concat": ["--hours", "0.005", "--chunk-seconds", "5"],
    "embedded": ["--chars", "120", "--workers", "1"],
    "chapter_check": ["--chars", "300", "--hours", "0.01"],
    "dispatch": [
        *("--chunks", "6", "--workers", "2", "--latency", "const:0.1"),
        *("--rerun", "none", "--sequential-sample", "2"),
    ],
    "timeline": ["--chunks", "6", "--workers", "2", "--latency", "const:0.1"],
    "reliability": ["--chunks", "6"],
    "flow_memory": ["--hours", "0.005", "--workers", "2"],
    "prefect_load": ["--chunks", "3", "--chapters", "1", "--workers", "2"],
    "elevenlabs_digest": ["--chunks", "2", "--latency", "0.2", "--concurrency", "2"],
    "speech_api": ["--chunks", "2", "--workers", "1"],
}
MODULES = {"latency", "prefect_harness", "record"}  # used by the benches, not run alone
PRINTS_ONLY = {"timeline"}  # a table, no figures file
OWN_SERVER = {"prefect_load"}  # measures a Prefect server of its own


def test_every_bench_has_a_smoke_run() -> None:
    scripts = {p.stem for p in (ROOT / "bench").glob("*.py") if p.stem != "__init__"}
    assert scripts - MODULES - {"chatterbox_gpu"} == set(SMALLEST)


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize("name", sorted(SMALLEST))
def test_the_bench_runs_from_its_documented_command(name: str, tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "NARRATOR_BENCH_RESULTS": str(tmp_path)}
    # the session's Prefect server, so that each bench does not start one (a user's run
    # starts its own: the benches report that start apart)
    env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    if name in OWN_SERVER:
        env.pop("PREFECT_API_URL")
    done = subprocess.run(
        [sys.executable, f"bench/{name}.py", *SMALLEST[name]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "|---" in done.stdout  # its table
    if name not in PRINTS_ONLY:
        [written] = tmp_path.glob("*.json")
        assert json.loads(written.read_text())["date"]


def test_the_gpu_bench_says_what_it_needs_without_the_gpu_extra() -> None:
    done = subprocess.run(
        [sys.executable, "bench/chatterbox_gpu.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode == 0:
        pytest.skip("the gpu extra and a CUDA device are here: the bench ran")
    [line] = done.stderr.strip().splitlines()  # one line, no traceback
    assert done.returncode == 1
    assert "needs the gpu extra" in line or "no CUDA device" in line
