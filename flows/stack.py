"""The local operations stack: `narrator stack` brings it up, Ctrl-C takes it down.

    1. a Prefect server on 127.0.0.1 (its database in PREFECT_HOME, ~/.prefect by default)
    2. the `narrator` process work pool, created if missing
    3. every deployment in prefect.yaml (narrate-chapter, narrate-digest-elevenlabs,
       redo-chunks, nightly-batch)
    4. a process worker on that pool, running flows from this checkout

Each piece is a `prefect` command of the installed Prefect, run as a child process with its
output in `log_dir`; the server and worker live until `stop()`. Production runs the same
pieces separately (deployments/operations.md).
"""

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from flows.services import child_environment
from gpu_worker.errors import PermanentError

ROOT = Path(__file__).resolve().parent.parent
POOL = "narrator"


@dataclass
class Stack:
    """A running local stack: its address, and the processes to stop."""

    port: int
    log_dir: Path
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

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


def start(
    port: int = 4200,
    log_dir: Path = ROOT / "out" / "stack",
    env: dict[str, str] | None = None,
    server_timeout: float = 90,
) -> Stack:
    """Bring the stack up and return it; on any failure, stop what was started."""
    log_dir.mkdir(parents=True, exist_ok=True)
    stack_env = {
        **(child_environment() if env is None else env),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "NARRATOR_HOME": str(ROOT),
    }
    stack = Stack(port, log_dir, stack_env)
    try:
        server = _spawn(stack, "server", "start", "--host", "127.0.0.1", "--port", str(port),
                        name="server")  # fmt: skip
        _wait_healthy(stack, server, server_timeout)
        if not _pool_exists(stack):
            _run(stack, "work-pool", "create", POOL, "--type", "process", name="setup")
        _run(stack, "deploy", "--all", name="setup")
        _spawn(stack, "worker", "start", "--pool", POOL, "--name", "narrator-local",
               name="worker")  # fmt: skip
    except BaseException:
        stack.stop()
        raise
    return stack
