"""The local operations stack, end to end: a real Prefect server on 127.0.0.1, the
deployments from prefect.yaml, and a process worker that runs what the API is asked for."""

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flows import stack as ops
from tasks.audio import decode_wav

CHAPTER = "# The Ferry\n\nThe ferry left at dawn. Nobody on the pier waved goodbye.\n"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ops.Stack]:
    home = tmp_path_factory.mktemp("stack")
    env = {
        **os.environ,
        "PREFECT_HOME": str(home / "prefect"),
        "NARRATOR_CACHE_DIR": str(home / "cache"),
        "NARRATOR_TIMEZONE": "Europe/Berlin",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }
    running = ops.start(port=free_port(), log_dir=home / "logs", env=env, server_timeout=120)
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
    worker_log = (stack.log_dir / "worker.log").read_text()[-3000:]
    raise AssertionError(f"flow run not finished in {timeout} s; worker log:\n{worker_log}")


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
