"""A run told to stop (a supervisor's SIGTERM, or Ctrl-C) stops cleanly: its jobs on the
endpoint are cancelled within 2 s, it sends no more, its temporary Prefect server and every
other child process is gone, and it exits non-zero saying so."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import pytest

from gpu_worker.best_of_n import BestOfN
from gpu_worker.handler import handle
from local_endpoint.faults import FaultProfile
from local_endpoint.server import Endpoint, EndpointConfig

KEY = "shutdown-key"
ACTIVE = ("IN_QUEUE", "IN_PROGRESS")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stopped_run_cancels_its_jobs_stops_its_children_and_exits_non_zero(
    signum: int, worker: BestOfN, serve: Callable[[Any], str], tmp_path: Path
) -> None:
    # every job takes a minute: the run is stopped with all its jobs on the endpoint
    slow = FaultProfile(rate=1.0, kinds=["slow"], slow_seconds=60)
    endpoint = Endpoint(
        EndpointConfig(api_key=KEY, faults=slow), [partial(handle, worker=worker)] * 2
    )
    base = serve(endpoint.app)
    source = tmp_path / "long.md"
    source.write_text("".join(f"The keeper counted ship number {n}.\n\n" for n in range(6)))
    env = {
        **os.environ,
        "NARRATOR_BACKEND": "runpod",
        "NARRATOR_RUNPOD_ENDPOINT_ID": "local",
        "NARRATOR_RUNPOD_BASE_URL": f"{base}/v2",
        "NARRATOR_RUNPOD_API_KEY": KEY,
        "NARRATOR_ENDPOINT_LIMIT": "",
        "NARRATOR_CACHE_DIR": str(tmp_path / "cache"),
    }
    env.pop("PREFECT_API_URL", None)  # its own temporary Prefect server: a child process
    command = [sys.executable, "-m", "flows.cli", "run", str(source), "--out",
               str(tmp_path / "out"), "-n", "1", "--no-validate", "--formats", ""]  # fmt: skip
    run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 150
        while sum(j.status in ACTIVE for j in endpoint.jobs.values()) < 6:
            assert time.monotonic() < deadline and run.poll() is None, run.stderr.read()
            time.sleep(0.1)
        children = psutil.Process(run.pid).children(recursive=True)
        assert children  # the temporary Prefect server at least

        stopped = time.monotonic()
        run.send_signal(signum)
        while any(j.status in ACTIVE for j in endpoint.jobs.values()):
            assert time.monotonic() - stopped < 2.0, [j.status for j in endpoint.jobs.values()]
            time.sleep(0.02)
        _, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode != 0
    assert b"stopped; jobs still on the endpoint were cancelled" in stderr, stderr[-2000:]
    assert [j.status for j in endpoint.jobs.values()] == ["CANCELLED"] * 6
    assert not [j for j in endpoint.jobs.values() if j.created > stopped]  # nothing sent after
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
    assert not (tmp_path / "out" / "long.wav").exists()
