"""The local operations stack: `narrator stack` brings it up, Ctrl-C takes it down.

    1. a Prefect server on 127.0.0.1, its database SQLite in PREFECT_HOME (~/.prefect by
       default) or, with `postgres`, a PostgreSQL cluster in that folder (flows/postgres.py)
    2. the `narrator` process work pool, created if missing
    3. every deployment in prefect.yaml (narrate-chapter, narrate-digest-elevenlabs,
       redo-chunks, nightly-batch)
    4. the automation that marks a flow run Crashed when its heartbeats stop (its worker's
       machine died), so that a batch runs that chapter again (flows/fan_out.py)
    5. `workers` process workers on that pool, running flows from this checkout

Each piece is a `prefect` command of the installed Prefect, run as a child process with its
output in `log_dir`; the server and worker live until `stop()`. Production runs the same
pieces separately (deployments/operations.md).
"""

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx

from flows import postgres as pg
from flows.services import child_environment
from gpu_worker.errors import PermanentError

ROOT = Path(__file__).resolve().parent.parent
POOL = "narrator"
CRASH_AUTOMATION = "narrator: mark silent flow runs crashed"
HEARTBEAT_SECONDS = 30  # Prefect's minimum


@dataclass
class Stack:
    """A running local stack: its address, and the processes to stop."""

    port: int
    log_dir: Path
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    database: pg.Postgres | None = None

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.ui_url}/api"

    def stop(self) -> None:
        """Stop the worker, then the server (each gets 10 s to exit cleanly)."""
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()
        if self.database is not None:
            self.database.stop()
            self.database = None


def _prefect() -> str:
    """The `prefect` command installed beside this interpreter."""
    beside = Path(sys.executable).parent / "prefect"
    found = str(beside) if beside.exists() else shutil.which("prefect")
    if not found:
        raise PermanentError("the prefect command is not installed; run `make setup` first")
    return found


def _run(stack: Stack, *args: str, name: str) -> None:
    """Run one prefect command to completion; its output goes to `log_dir/name.log`."""
    with open(stack.log_dir / f"{name}.log", "ab") as log:
        done = subprocess.run(
            [_prefect(), "--no-prompt", *args], cwd=ROOT, env=stack.env, stdout=log, stderr=log
        )
    if done.returncode != 0:
        raise PermanentError(
            f"`prefect {' '.join(args)}` failed; see {stack.log_dir / f'{name}.log'}"
        )


def _spawn(stack: Stack, *args: str, name: str) -> subprocess.Popen[bytes]:
    with open(stack.log_dir / f"{name}.log", "ab") as log:
        process = subprocess.Popen(
            [_prefect(), *args], cwd=ROOT, env=stack.env, stdout=log, stderr=log
        )
    stack.processes.append(process)
    return process


def _wait_healthy(stack: Stack, server: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise PermanentError(
                f"the Prefect server exited ({server.returncode}); "
                f"see {stack.log_dir / 'server.log'} (is port {stack.port} taken?)"
            )
        try:
            if httpx.get(f"{stack.api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise PermanentError(f"the Prefect server did not answer within {timeout:.0f} s")


def _pool_exists(stack: Stack) -> bool:
    return httpx.get(f"{stack.api_url}/work_pools/{POOL}", timeout=10).status_code == 200


def ensure_crash_automation(api_url: str, silent_seconds: float) -> None:
    """Create, once, the automation that marks a Running flow run Crashed when no heartbeat
    of it has come for `silent_seconds` (Prefect's zombie-flow recipe): a worker's machine
    that dies leaves its runs Running for ever otherwise, and no batch would run them again.
    Flow runs send heartbeats when PREFECT_FLOWS_HEARTBEAT_FREQUENCY is set on the worker."""
    from prefect.automations import Automation
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        with get_client(sync_client=True) as client:
            if client.read_automations_by_name(CRASH_AUTOMATION):
                return
        Automation(
            name=CRASH_AUTOMATION,
            description="A flow run whose heartbeats stop (its worker died) is marked "
            "Crashed; narrate_batch then runs that chapter again.",
            trigger=EventTrigger(
                after={"prefect.flow-run.heartbeat"},
                expect={
                    "prefect.flow-run.heartbeat",
                    "prefect.flow-run.Completed",
                    "prefect.flow-run.Failed",
                    "prefect.flow-run.Cancelled",
                    "prefect.flow-run.Crashed",
                },
                match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
                for_each={"prefect.resource.id"},
                posture=Posture.Proactive,
                threshold=1,
                within=timedelta(seconds=silent_seconds),
            ),
            actions=[
                ChangeFlowRunState(
                    state=StateType.CRASHED,
                    message=f"no heartbeat for {silent_seconds:g} s: its worker stopped",
                )
            ],
        ).create()


def start(
    port: int = 4200,
    log_dir: Path = ROOT / "out" / "stack",
    env: dict[str, str] | None = None,
    server_timeout: float = 90,
    postgres: Path | None = None,
    workers: int = 1,
    worker_limit: int | None = None,
    silent_seconds: float = 3 * HEARTBEAT_SECONDS,
) -> Stack:
    """Bring the stack up and return it; on any failure, stop what was started.
    `postgres`: the folder of a PostgreSQL cluster for the server's database (created on
    first use, served on port + 1); None: SQLite. `worker_limit`: flow runs each worker runs
    at once (None: no limit)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    stack_env = {
        **(child_environment() if env is None else env),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS),
        "NARRATOR_HOME": str(ROOT),
    }
    stack = Stack(port, log_dir, stack_env)
    try:
        if postgres is not None:
            stack.database = pg.start(postgres, port + 1, log_dir / "postgres.log")
            stack_env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = stack.database.url
        server = _spawn(stack, "server", "start", "--host", "127.0.0.1", "--port", str(port),
                        name="server")  # fmt: skip
        _wait_healthy(stack, server, server_timeout)
        if not _pool_exists(stack):
            _run(stack, "work-pool", "create", POOL, "--type", "process", name="setup")
        _run(stack, "deploy", "--all", name="setup")
        ensure_crash_automation(stack.api_url, silent_seconds)
        for n in range(1, workers + 1):
            suffix = "" if workers == 1 else f"-{n}"
            limit = [] if worker_limit is None else ["--limit", str(worker_limit)]
            _spawn(stack, "worker", "start", "--pool", POOL, "--name", f"narrator-local{suffix}",
                   *limit, name=f"worker{suffix}")  # fmt: skip
    except BaseException:
        stack.stop()
        raise
    return stack
