"""The machinery of bench/prefect_load.py: a real Prefect server in a process of its own
(the stand-in fleet is bench/latency.py's RemoteFleet), a sampler of their CPU and memory,
and counters of API calls (from the server's access log) and of what Prefect's client logs.

    start_server(home)          `prefect server start` on 127.0.0.1, SQLite in `home`
    Meter(pids)                 CPU seconds and RSS of process trees, sampled in a thread
    api_calls(log, offset)      the server's access log from `offset`: calls by route, status
    ClientLog                   client retries (by status) and warnings, counted
    wait_recorded(api, since)   when the server had recorded every task run since `since`
    task_runs(since)            those task runs, grouped by task
"""

import datetime
import itertools
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterStartTime

ACCESS = re.compile(r'"(GET|POST|PATCH|PUT|DELETE) (\S+) HTTP/[\d.]+" (\d{3})')
EXCEPTION = re.compile(r"^([\w.]+(?:Error|Exception)): (.{0,80})", re.MULTILINE)
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    home: Path, database_url: str | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """`prefect server start` on a free port, its server.log in `home`, its database SQLite
    in `home` or the PostgreSQL at `database_url`."""
    home.mkdir()
    port, log = free_port(), home / "server.log"
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_LOGGING_LEVEL="INFO",  # uvicorn's access log: every API call counted
        PREFECT_API_LOG_RETRYABLE_ERRORS="true",  # what a 503 was, in server.log
    )
    if database_url:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
    prefect = str(Path(sys.executable).parent / "prefect")
    with log.open("ab") as out:
        process = subprocess.Popen(
            [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url, deadline = f"http://127.0.0.1:{port}/api", time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop(process)
    raise RuntimeError(f"the Prefect server did not start; see {log}")


def stop(process: subprocess.Popen[Any]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Meter(threading.Thread):
    """Samples CPU seconds and RSS of named process trees every `interval` seconds."""

    def __init__(self, pids: dict[str, int], interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.interval = interval
        self.samples: list[tuple[float, dict[str, tuple[float, float]]]] = []
        self.done = threading.Event()

    def read(self) -> tuple[float, dict[str, tuple[float, float]]]:
        """(time, {name: (CPU seconds, RSS bytes)}) now, each tree summed."""
        now, reading = time.time(), {}
        for name, proc in self.procs.items():
            cpu = rss = 0.0
            try:
                tree = [proc, *proc.children(recursive=True)]
            except psutil.Error:
                tree = []  # it has exited: the figures end with it
            for p in tree:
                try:
                    t = p.cpu_times()
                    cpu, rss = cpu + t.user + t.system, rss + p.memory_info().rss
                except psutil.Error:
                    pass
            reading[name] = (cpu, rss)
        return now, reading

    def run(self) -> None:
        while not self.done.wait(self.interval):
            self.samples.append(self.read())

    def between(self, name: str, t0: float, t1: float) -> dict[str, float]:
        """CPU seconds of `name` from t0 to t1 (the samples around them), its mean and peak
        CPU % over that time (100 = one core busy) and its peak RSS."""
        before = [i for i, (t, _) in enumerate(self.samples) if t <= t0]
        after = [i for i, (t, _) in enumerate(self.samples) if t >= t1]
        first, last = before[-1] if before else 0, after[0] if after else len(self.samples) - 1
        window = [(t, r[name]) for t, r in self.samples[first : last + 1]]
        if len(window) < 2:
            return {"cpu_s": 0.0, "mean_cpu_pct": 0, "peak_cpu_pct": 0, "peak_rss_mb": 0}
        rates = [(b[1][0] - a[1][0]) / (b[0] - a[0]) for a, b in itertools.pairwise(window)]
        cpu = window[-1][1][0] - window[0][1][0]
        return {
            "cpu_s": round(cpu, 2),
            "mean_cpu_pct": round(100 * cpu / (window[-1][0] - window[0][0])),
            "peak_cpu_pct": round(100 * max(rates)),
            "peak_rss_mb": round(max(r[1] for _, r in window) / 2**20),
        }


class ClientLog(logging.Handler):
    """Counts what Prefect's client logs: retried API calls (at debug level, by status) and
    warnings or worse (by logger). Debug records stop here; the rest go on as before."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.retries: Counter[str] = Counter()
        self.warnings: Counter[str] = Counter()
        self.examples: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "retryable" in message:
            code = re.search(r"status code (\d+)", message)
            self.retries[code.group(1) if code else "exception"] += 1
        if record.levelno >= logging.WARNING:
            self.warnings[record.name] += 1
            if len(self.examples) < 50:
                self.examples.append(f"{record.name}: {message[:200]}")

    @contextmanager
    def installed(self) -> Iterator["ClientLog"]:
        client, root = logging.getLogger("prefect.client"), logging.getLogger("prefect")
        level, propagate = client.level, client.propagate
        forward = _Forward(logging.getLogger(), level)
        client.setLevel(logging.DEBUG)
        client.propagate = False  # debug records must not reach the console
        client.addHandler(forward)
        root.addHandler(self)  # warnings from every other prefect logger
        client.addHandler(self)
        try:
            yield self
        finally:
            client.removeHandler(self)
            client.removeHandler(forward)
            root.removeHandler(self)
            client.setLevel(level)
            client.propagate = propagate


class _Forward(logging.Handler):
    def __init__(self, to: logging.Logger, level: int) -> None:
        super().__init__(level or logging.WARNING)
        self.to = to

    def emit(self, record: logging.LogRecord) -> None:
        self.to.handle(record)  # the root logger: Prefect's console handler


def api_calls(log: Path, offset: int) -> dict[str, Any]:
    """API calls in the server's access log after `offset`: by status, and by route."""
    with log.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    lines = text.splitlines()
    statuses: Counter[str] = Counter()
    routes: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    for line in lines:
        if m := ACCESS.search(line):
            route = f"{m.group(1)} {UUID.sub('{id}', m.group(2).split('?')[0])}"
            statuses[m.group(3)] += 1
            routes[route] += 1
            if m.group(3) >= "400":
                refused[f"{route} {m.group(3)}"] += 1
    return {
        "total": sum(statuses.values()),
        "by_status": dict(sorted(statuses.items())),
        "routes": dict(routes.most_common(12)),
        "refused": dict(refused.most_common()),
        "server_log_errors": sum("Traceback" in line for line in lines),
        "server_exceptions": dict(Counter(": ".join(m) for m in EXCEPTION.findall(text))),
    }


TERMINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat()


def read_task_runs(since: float) -> list[Any]:
    """Every task run of the flow runs started after `since`, as the server has them."""
    after = datetime.datetime.fromtimestamp(since, datetime.UTC)
    flows = FlowRunFilter(start_time=FlowRunFilterStartTime(after_=after))
    runs: list[Any] = []
    with get_client(sync_client=True) as client:
        while batch := client.read_task_runs(flow_run_filter=flows, limit=200, offset=len(runs)):
            runs += batch
    return runs


def task_runs(since: float) -> dict[str, Any]:
    """Task runs since `since`, grouped by task: count, states, span, mean run time."""
    groups: dict[str, list[Any]] = {}
    runs = read_task_runs(since)
    for run in runs:
        groups.setdefault(run.task_key.rsplit("-", 1)[0], []).append(run)
    summary = {}
    for name, members in sorted(groups.items(), key=lambda g: -len(g[1])):
        timed = [r for r in members if r.start_time and r.end_time]
        durations = [(r.end_time - r.start_time).total_seconds() for r in timed]
        summary[name] = {
            "count": len(members),
            "states": dict(Counter(str(r.state_name) for r in members)),
            "first_start": min((r.start_time.timestamp() for r in timed), default=None),
            "last_end": max((r.end_time.timestamp() for r in timed), default=None),
            "mean_run_ms": round(1000 * float(np.mean(durations))) if durations else None,
        }
    return {"count": len(runs), "groups": summary}


def chunk_span(tasks: dict[str, Any]) -> tuple[float, float] | None:
    """First start to last end of the most numerous task (one per chunk), if any ran."""
    if not tasks["groups"]:
        return None
    biggest = next(iter(tasks["groups"].values()))
    if biggest["first_start"] is None:
        return None
    return biggest["first_start"], biggest["last_end"]


def wait_recorded(api: str, since: float, settle: float = 3.0, limit: float = 600) -> float:
    """When the server's count of finished task runs since `since` stopped changing."""
    last, changed, deadline = -1, time.time(), time.time() + limit
    body = {
        "flow_runs": {"start_time": {"after_": iso(since)}},
        "task_runs": {"state": {"type": {"any_": list(TERMINAL)}}},
    }
    while time.time() < deadline:
        count = httpx.post(f"{api}/task_runs/count", json=body, timeout=60).json()
        if count != last:
            last, changed = count, time.time()
        elif time.time() - changed >= settle:
            break
        time.sleep(0.5)
    return changed
