"""The local operations stack, end to end: a real Prefect server on a real PostgreSQL on
127.0.0.1, the deployments from prefect.yaml, and two process workers that run what the API
is asked for, their chunks sent to a local RunPod endpoint."""

import json
import os
import socket
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from flows import stack as ops
from gpu_worker.best_of_n import BestOfN
from gpu_worker.handler import handle
from local_endpoint.server import Endpoint, EndpointConfig
from tasks.audio import decode_wav
from tests.conftest import start_server, stop_server

CHAPTER = "# The Ferry\n\nThe ferry left at dawn. Nobody on the pier waved goodbye.\n"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
KEY = "stack-endpoint-key"
ENDPOINT_LIMIT = 2  # jobs in flight at the endpoint, over every worker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def endpoint(worker: BestOfN) -> Iterator[tuple[Endpoint, str]]:
    """The local RunPod endpoint every worker's chunks go to, with its job log."""
    served = Endpoint(EndpointConfig(api_key=KEY), [partial(handle, worker=worker)] * 2)
    server, thread, url = start_server(served.app)
    yield served, url
    stop_server(server, thread)


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, endpoint: tuple[Endpoint, str]
) -> Iterator[ops.Stack]:
    home = tmp_path_factory.mktemp("stack")
    env = {
        **os.environ,
        "PREFECT_HOME": str(home / "prefect"),
        "NARRATOR_CACHE_DIR": str(home / "cache"),
        "NARRATOR_TIMEZONE": "Europe/Berlin",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "NARRATOR_BACKEND": "runpod",
        "NARRATOR_RUNPOD_ENDPOINT_ID": "local",
        "NARRATOR_RUNPOD_BASE_URL": f"{endpoint[1]}/v2",
        "NARRATOR_RUNPOD_API_KEY": KEY,
        "NARRATOR_RUNPOD_CONCURRENCY": str(ENDPOINT_LIMIT),
        "NARRATOR_RUNPOD_JOB_TIMEOUT": "120",
    }
    running = ops.start(
        port=free_port(),
        log_dir=home / "logs",
        env=env,
        server_timeout=120,
        postgres=home / "postgres",
        workers=2,
        worker_limit=2,
    )
    yield running
    running.stop()


def api(stack: ops.Stack, method: str, path: str, **kw: Any) -> Any:
    """One call to the stack's API; a 503 (its SQLite database busy on a loaded machine)
    is asked again, as Prefect's own client does."""
    for attempt in range(6):
        response = httpx.request(method, f"{stack.api_url}{path}", timeout=30, **kw)
        if response.status_code != 503 or attempt == 5:
            break
        time.sleep(1 + attempt)
    response.raise_for_status()
    return response.json()


def wait_for(stack: ops.Stack, run_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api(stack, "GET", f"/flow_runs/{run_id}")
        if run["state"]["type"] in TERMINAL:
            return dict(run)
        time.sleep(1)
    logs = "\n".join(p.read_text()[-2000:] for p in stack.log_dir.glob("worker*.log"))
    raise AssertionError(f"flow run not finished in {timeout} s; worker logs:\n{logs}")


def test_the_ui_run_button_path_narrates_a_chapter_with_artifacts_and_logs_then_redoes_a_chunk(
    stack: ops.Stack, tmp_path: Path
) -> None:
    chapter = tmp_path / "ferry.md"
    chapter.write_text(CHAPTER)
    out = tmp_path / "out"
    deployment = api(stack, "GET", "/deployments/name/narrate-chapter/narrate-chapter")
    # What the UI's Run button sends: a flow run of the deployment with its parameters.
    parameters = {
        "source": str(chapter),
        "out_dir": str(out),
        "options": {"generation": {"n_candidates": 1}, "formats": [], "validate_chapter": False},
    }
    run = api(
        stack,
        "POST",
        f"/deployments/{deployment['id']}/create_flow_run",
        json={"parameters": parameters},
    )
    finished = wait_for(stack, run["id"], timeout=300)
    assert finished["state"]["type"] == "COMPLETED", finished["state"]["message"]

    samples, rate = decode_wav((out / "ferry.wav").read_bytes(), "ferry.wav")
    assert samples.size / rate > 2.0
    artifacts = api(
        stack,
        "POST",
        "/artifacts/filter",
        json={"artifacts": {"flow_run_id": {"any_": [run["id"]]}}},
    )
    by_key = {a["key"]: a for a in artifacts}
    assert {"ferry-chunks", "ferry-summary", "ferry-progress"} <= set(by_key)
    assert str(out) in by_key["ferry-summary"]["data"]
    assert f"`narrator review {out}`" in by_key["ferry-summary"]["data"]
    table = json.loads(by_key["ferry-chunks"]["data"])
    metadata = json.loads((out / "metadata.json").read_text())
    assert [row["best score"] for row in table] == [c["best_score"] for c in metadata["chunks"]]
    logs = api(stack, "POST", "/logs/filter", json={"logs": {"flow_run_id": {"any_": [run["id"]]}}})
    messages = [entry["message"] for entry in logs]
    assert any("chunk 0 attempt 1" in m for m in messages)
    assert any(m.startswith("chunk 0: score") for m in messages)

    # the review's redo, as the UI's Run button sends it: a new take of chunk 1
    redo = api(stack, "GET", "/deployments/name/redo-chunks/redo-chunks")
    run = api(
        stack,
        "POST",
        f"/deployments/{redo['id']}/create_flow_run",
        json={"parameters": {"out_dir": str(out), "chunks": [1]}},
    )
    finished = wait_for(stack, run["id"], timeout=300)
    assert finished["state"]["type"] == "COMPLETED", finished["state"]["message"]
    again = json.loads((out / "metadata.json").read_text())
    assert [c["take"] for c in again["chunks"]] == [0, 1] + [0] * (len(again["chunks"]) - 2)
    assert again["totals"]["cache_hits"] == len(again["chunks"]) - 1


def test_the_schema_refuses_bad_parameters_before_any_run(stack: ops.Stack) -> None:
    deployment = api(stack, "GET", "/deployments/name/narrate-chapter/narrate-chapter")
    response = httpx.post(
        f"{stack.api_url}/deployments/{deployment['id']}/create_flow_run",
        json={"parameters": {"source": "ch.md", "options": {"generation": {"n_candidates": 0}}}},
        timeout=30,
    )
    assert response.status_code == 409
    assert "n_candidates" in response.text


def test_the_nightly_batch_is_scheduled_at_two_in_the_configured_timezone(
    stack: ops.Stack,
) -> None:
    nightly = api(stack, "GET", "/deployments/name/narrate-batch/nightly-batch")
    (schedule,) = nightly["schedules"]
    assert schedule["active"] is True
    assert schedule["schedule"]["cron"] == "0 2 * * *"
    assert schedule["schedule"]["timezone"] == "Europe/Berlin"
    assert nightly["enforce_parameter_schema"] is True
    assert nightly["parameters"]["source"] == "samples"
    assert nightly["pull_steps"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(ops.ROOT)}}
    ]


def most_at_once(jobs: list[Any]) -> int:
    """The most jobs in flight at once at the endpoint (received, not yet answered)."""
    edges = sorted(
        [(job.created, 1) for job in jobs] + [(job.finished or 1e18, -1) for job in jobs]
    )
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def test_a_batch_on_postgres_runs_each_chapter_as_a_flow_run_spread_over_both_workers(
    stack: ops.Stack, endpoint: tuple[Endpoint, str], tmp_path: Path
) -> None:
    assert (
        stack.database is not None
        and "postgresql" in stack.env["PREFECT_SERVER_DATABASE_CONNECTION_URL"]
    )
    folder = tmp_path / "chapters"
    folder.mkdir()
    for n, place in enumerate(["harbour", "lighthouse", "ferry", "island"], start=1):
        (folder / f"ch{n}.md").write_text(
            f"# Chapter {n}\n\nThe {place} was quiet that morning.\n\n"
            f"Gulls circled over the {place}.\n\nBy noon the rain came in from the sea.\n"
        )
    out = tmp_path / "out"
    before = len(endpoint[0].jobs)
    nightly = api(stack, "GET", "/deployments/name/narrate-batch/nightly-batch")
    run = api(
        stack,
        "POST",
        f"/deployments/{nightly['id']}/create_flow_run",
        json={
            "parameters": {
                "source": str(folder),
                "out_dir": str(out),
                "max_in_flight": 4,
                "options": {
                    "generation": {"n_candidates": 1},
                    "formats": [],
                    "validate_chapter": False,
                },
            }
        },
    )
    finished = wait_for(stack, run["id"], timeout=400)
    assert finished["state"]["type"] == "COMPLETED", finished["state"]["message"]

    chapters = api(
        stack,
        "POST",
        "/flow_runs/filter",
        json={"flow_runs": {"parent_flow_run_id": {"any_": [run["id"]]}}},
    )
    assert len(chapters) == 4  # each chapter its own flow run of narrate-chapter
    assert {c["state"]["type"] for c in chapters} == {"COMPLETED"}
    assert {c["labels"]["prefect.worker.name"] for c in chapters} == {
        "narrator-local-1",
        "narrator-local-2",
    }
    for n in range(1, 5):
        samples, rate = decode_wav((out / f"ch{n}" / f"ch{n}.wav").read_bytes(), "wav")
        assert samples.size / rate > 3.0
    jobs = list(endpoint[0].jobs.values())[before:]
    assert len(jobs) >= 12  # 4 chapters x 3 chunks, none cached before
    assert most_at_once(jobs) <= ENDPOINT_LIMIT  # the Prefect limit, shared by both workers
