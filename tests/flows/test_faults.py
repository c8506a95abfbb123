"""Chapters survive an endpoint that misbehaves: the local RunPod-compatible endpoint runs
a fault drill (local_endpoint/faults.py) and the flow must lose nothing and change nothing."""

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from flows.chapter import NarrationOptions, narrate_chapter
from gpu_worker.best_of_n import BestOfN
from gpu_worker.errors import PermanentError
from gpu_worker.handler import handle
from gpu_worker.schema import GenerationParams
from local_endpoint.faults import HTTP_FAULTS, JOB_FAULTS, FaultProfile
from local_endpoint.server import Endpoint, EndpointConfig
from tasks.text import ChunkingOptions

pytestmark = pytest.mark.usefixtures("prefect_server")

WORDS = ["harbour", "lantern", "gull", "tide", "rope", "anchor", "keel", "mast", "sail", "pier"]
OPTIONS = NarrationOptions(
    generation=GenerationParams(n_candidates=1, max_retries=0, seed=5),
    chunking=ChunkingOptions(target_chars=40, max_chars=80, min_chars=5),
    formats=[],
    validate_chapter=False,
)


def chapter(paragraphs: int, extra: dict[int, str] | None = None) -> str:
    """Two or three words per paragraph, so one short chunk each."""
    extra = extra or {}
    lines = [
        f"{WORDS[i % 10].title()} {WORDS[i // 10 % 10]}{extra.get(i, '')}."
        for i in range(paragraphs)
    ]
    return "\n\n".join(lines) + "\n"


@pytest.fixture
def endpoint(
    worker: BestOfN, serve: Callable[[Any], str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Endpoint:
    """Two worker slots, with the flow pointed at them and fast retries."""
    served = Endpoint(
        EndpointConfig(api_key="k"), [partial(handle, worker=worker) for _ in range(2)]
    )
    base = serve(served.app)
    for name, value in {
        "BACKEND": "runpod",
        "RUNPOD_ENDPOINT_ID": "local",
        "RUNPOD_BASE_URL": f"{base}/v2",
        "RUNPOD_API_KEY": "k",
        "RUNPOD_CONCURRENCY": "2",
        "RUNPOD_JOB_TIMEOUT": "8",  # a loaded 2-core machine can take 4 s for a chunk
        "CHUNK_RETRIES": "8",
        "ENDPOINT_LIMIT": "",  # the Prefect limit is tested in test_runpod_flow.py
        "CHUNK_RETRY_DELAYS": "[0.2, 0.5, 1]",
        "CACHE_DIR": str(tmp_path / "cache"),
    }.items():
        monkeypatch.setenv(f"NARRATOR_{name}", value)
    return served


DRILL_CHUNKS = 40  # bench/reliability.py runs the same drill at 100 chunks and more


def test_forty_chunks_through_twenty_percent_faults_sound_exactly_as_without(
    endpoint: Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "drill.md"
    source.write_text(chapter(DRILL_CHUNKS))
    clean = narrate_chapter(str(source), str(tmp_path / "clean"), None, OPTIONS)
    assert clean.chunks == DRILL_CHUNKS and endpoint.counts["completed"] == DRILL_CHUNKS

    monkeypatch.setenv("NARRATOR_CACHE_DIR", str(tmp_path / "cache-faulted"))
    endpoint.drill_faults(FaultProfile(rate=0.2, retry_after=0.2, slow_seconds=0.5, seed=3))
    faulted = narrate_chapter(str(source), str(tmp_path / "faulted"), None, OPTIONS)

    injected = endpoint.drill.injected
    assert set(injected) == {*HTTP_FAULTS, *JOB_FAULTS}, injected  # every kind happened
    assert faulted.chunks == DRILL_CHUNKS and faulted.cache_hits == 0
    assert Path(faulted.audio).read_bytes() == Path(clean.audio).read_bytes()


def test_permanent_faults_fail_exactly_their_chunks_and_a_rerun_makes_only_those(
    endpoint: Endpoint, tmp_path: Path
) -> None:
    source = tmp_path / "marked.md"
    marked = {2: " quince", 5: " zephyr", 7: " ocelot"}
    source.write_text(chapter(10, marked))
    endpoint.drill_faults(FaultProfile(permanent_texts=["quince", "zephyr", "ocelot"]))

    with pytest.raises(PermanentError) as failed:
        narrate_chapter(str(source), str(tmp_path / "out"), None, OPTIONS)
    message = str(failed.value)
    assert message.startswith("3 of 10 chunks failed")
    assert sorted(int(n) for n in re.findall(r"chunk (\d+): ", message)) == [2, 5, 7]
    assert "cannot read this input" in message
    assert not (tmp_path / "out" / "marked.wav").exists()

    endpoint.drill_faults(FaultProfile())
    before = endpoint.counts["completed"]
    result = narrate_chapter(str(source), str(tmp_path / "out"), None, OPTIONS)
    assert endpoint.counts["completed"] - before == 3
    assert result.cache_hits == 7 and Path(result.audio).is_file()


def test_a_killed_run_loses_nothing_and_the_rerun_sends_only_unfinished_chunks(
    endpoint: Endpoint, tmp_path: Path
) -> None:
    from prefect.settings import PREFECT_API_URL

    source = tmp_path / "killed.md"
    lines = [f"The {WORDS[i % 10]} and the {WORDS[i // 10]} waited there." for i in range(12)]
    source.write_text("\n\n".join(lines) + "\n")
    cache, out = tmp_path / "cache", tmp_path / "out"
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    command = [sys.executable, "-m", "flows.cli", "run", str(source), "--out", str(out),
               "-n", "1", "--max-retries", "0", "--no-validate", "--formats", "",
               "--target-chars", "40", "--max-chars", "80", "--seed", "5"]  # fmt: skip
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while endpoint.counts["completed"] < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = time.monotonic()
    # entries only: a write the kill cut short leaves a hidden temporary file, never an entry
    saved = len([p for p in cache.iterdir() if p.is_file() and not p.name.startswith(".")])
    assert 0 < saved < 12  # killed mid-generation, with some chunks already safe
    assert not list(out.glob("*.wav")) and not (out / "metadata.json").exists()
    assert len(list(out.glob(".narrator-staging-*"))) == 1  # the killed run's, left behind

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"12 ({saved} from cache)" in done.stdout
    sent_after = [job for job in endpoint.jobs.values() if job.created > killed_at]
    assert len(sent_after) == 12 - saved
    assert not list(out.glob(".narrator-staging-*"))  # the rerun swept the stale one away
