"""A local stand-in for a RunPod serverless endpoint, around the real handler.

The hosted queue API on 127.0.0.1, for development, integration tests, fault drills and
benchmarks. It is not part of the worker image (gpu_worker/Dockerfile leaves it out).

    POST /v2/{id}/run                 {"input": {...}, "policy": {"executionTimeout": ms}}
    POST /v2/{id}/runsync?wait=ms     the same, answered when done (or after `wait`)
    GET  /v2/{id}/status/{job}        IN_QUEUE -> IN_PROGRESS -> COMPLETED | FAILED | CANCELLED
                                      | TIMED_OUT, with output or error, delayTime, executionTime
    POST /v2/{id}/cancel/{job}
    POST /v2/{id}/purge-queue
    GET  /v2/{id}/health              job and worker counts

Every request needs `Authorization: Bearer <key>` (or the bare key, as RunPod accepts),
compared in constant time. Bodies over RunPod's limits (10 MB /run, 20 MB /runsync) are
refused; results are kept 30 minutes after /run and 1 minute after /runsync, then answer
404. N worker slots each own a BestOfN, so no model is shared between threads; a job that
overruns its execution timeout is TIMED_OUT, and its slot stays busy until the handler
returns, as a real worker would.
"""

import asyncio
import contextlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from gpu_worker.best_of_n import BestOfN
from gpu_worker.errors import wire_string
from gpu_worker.handler import check_writable, handle
from gpu_worker.schema import explain
from gpu_worker.settings import WorkerSettings
from local_endpoint.faults import OOM_ERROR, PERMANENT_ERROR, FaultDrill, FaultProfile, corrupt

Handler = Callable[[dict[str, Any]], dict[str, Any]]
FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")


class EndpointConfig(BaseModel):
    endpoint_id: str = Field("local", description="The {id} in /v2/{id}/...")
    api_key: SecretStr = Field(description="Bearer token every request must carry.")
    run_max_bytes: int = 10 * 1024 * 1024
    runsync_max_bytes: int = 20 * 1024 * 1024
    run_retention_s: float = 30 * 60
    runsync_retention_s: float = 60
    execution_timeout_s: float = 600.0
    faults: FaultProfile = Field(default_factory=FaultProfile, description="A fault drill.")
    record_delivery: bool = Field(
        False, description="Record when a client first reads each job's result (benchmarks)."
    )


@dataclass
class Job:
    id: str
    input: Any
    timeout_s: float
    retention_s: float
    status: str = "IN_QUEUE"
    created: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    delivered: float | None = None  # when a client first read its final status
    output: Any = None
    error: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def finish(self, status: str, output: Any = None, error: str | None = None) -> None:
        if self.status in FINAL:
            return
        self.status, self.output, self.error = status, output, error
        self.finished = time.monotonic()
        self.done.set()

    def view(self, record_delivery: bool = False) -> dict[str, Any]:
        now = time.monotonic()
        if record_delivery and self.status in FINAL and self.delivered is None:
            self.delivered = now
        body: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "delayTime": round(((self.started or now) - self.created) * 1000),
        }
        if self.started is not None:
            body["executionTime"] = round(((self.finished or now) - self.started) * 1000)
        if self.status == "COMPLETED":
            body["output"] = self.output
        if self.error is not None:
            body["error"] = self.error
        return body


class Endpoint:
    """The queue and its worker slots; `app` serves the HTTP API."""

    def __init__(self, config: EndpointConfig, handlers: list[Handler]) -> None:
        self.config = config
        self.handlers = handlers
        self.jobs: dict[str, Job] = {}
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self.busy = 0
        self.counts = {"completed": 0, "failed": 0, "retried": 0}
        self.requests = 0
        self.drill = FaultDrill(config.faults)
        api = self._routes(FastAPI(title="narrator local RunPod endpoint"))
        api.router.on_startup.append(self._start)
        self.app = _HttpFaults(api, self)

    async def _start(self) -> None:
        for handler in self.handlers:
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="endpoint-worker")
            asyncio.get_running_loop().create_task(self._slot(handler, executor))

    async def _slot(self, handler: Handler, executor: ThreadPoolExecutor) -> None:
        loop = asyncio.get_running_loop()
        while True:
            job = await self.queue.get()
            if job.status != "IN_QUEUE":
                continue  # cancelled while queued
            job.status, job.started = "IN_PROGRESS", time.monotonic()
            self.busy += 1
            fault = self.drill.job_fault(job.input)
            try:
                if fault == "hang":  # a worker that never answers: TIMED_OUT unless cancelled
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(job.done.wait(), job.timeout_s)
                    job.finish("TIMED_OUT", error=f"job exceeded its {job.timeout_s:g} s timeout")
                    continue
                if fault in ("oom", "permanent"):
                    error = OOM_ERROR if fault == "oom" else PERMANENT_ERROR
                    self._settle(job, {"error": wire_string(error)})
                    continue
                if fault == "slow":
                    await asyncio.sleep(self.drill.profile.slow_seconds)
                result = await self._execute(job, handler, executor, loop)
            finally:
                self.busy -= 1
            if fault == "corrupt" and isinstance(result, dict) and "error" not in result:
                result = corrupt(result)
            self._settle(job, result)

    async def _execute(
        self,
        job: Job,
        handler: Handler,
        executor: ThreadPoolExecutor,
        loop: asyncio.AbstractEventLoop,
    ) -> Any:
        work = loop.run_in_executor(executor, handler, {"id": job.id, "input": job.input})
        try:
            return await asyncio.wait_for(asyncio.shield(work), job.timeout_s)
        except TimeoutError:
            job.finish("TIMED_OUT", error=f"job exceeded its {job.timeout_s:g} s execution timeout")
            (result,) = await asyncio.gather(work, return_exceptions=True)  # slot stays busy
            return result
        except Exception as e:  # the handler raised instead of returning {"error": ...}
            return {"error": wire_string(e)}

    def _settle(self, job: Job, result: Any) -> None:
        if isinstance(result, BaseException):
            result = {"error": wire_string(result)}
        if isinstance(result, dict) and "error" in result:
            if job.status not in FINAL:
                self.counts["failed"] += 1
            job.finish("FAILED", error=str(result["error"]))
        else:
            if job.status not in FINAL:
                self.counts["completed"] += 1
            job.finish("COMPLETED", output=result)

    def drill_faults(self, profile: FaultProfile) -> None:
        """Start a new fault drill (FaultProfile() ends it); counts start again."""
        self.drill = FaultDrill(profile)

    def inject(self, status: int, times: int = 1, retry_after: float | None = None) -> None:
        """Answer the next `times` requests with `status` (FaultDrill.schedule)."""
        self.drill.schedule(status, times, retry_after)

    def _expire(self) -> None:
        now = time.monotonic()
        for job_id in [
            j.id
            for j in self.jobs.values()
            if j.finished is not None and now - j.finished > j.retention_s
        ]:
            del self.jobs[job_id]

    def _authorised(self, request: Request) -> bool:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        expected = self.config.api_key.get_secret_value()
        return hmac.compare_digest(given.encode(), expected.encode())

    async def _submit(self, request: Request, limit: int, retention_s: float) -> Job:
        """A job from a /run or /runsync body; a client's mistake is a 4xx saying what is
        wrong, never a 500 (which clients retry)."""
        body = await _read_body(request, limit)
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError) as e:
            raise _Refusal(400, "request body is not JSON") from e
        if not isinstance(payload, dict) or "input" not in payload:
            raise _Refusal(400, 'request body must be a JSON object with an "input" key')
        try:
            policy = Policy.model_validate(payload.get("policy") or {})
        except ValidationError as e:
            raise _Refusal(400, f"policy: {explain(e)}") from e
        timeout_ms = policy.executionTimeout
        timeout = timeout_ms / 1000 if timeout_ms else self.config.execution_timeout_s
        job = Job(f"{uuid.uuid4()}-u1", payload["input"], timeout, retention_s)
        self.jobs[job.id] = job
        await self.queue.put(job)
        return job

    def _routes(self, app: FastAPI) -> FastAPI:
        base = f"/v2/{self.config.endpoint_id}"

        @app.middleware("http")
        async def guard(request: Request, call_next):
            if not self._authorised(request):
                return JSONResponse({"error": "Unauthorized: invalid or missing API key"}, 401)
            self.requests += 1
            self._expire()
            return await call_next(request)

        @app.exception_handler(_Refusal)
        async def refused(request: Request, refusal: _Refusal) -> JSONResponse:
            return JSONResponse({"error": refusal.message}, refusal.status)

        @app.post(f"{base}/run")
        async def run(request: Request) -> dict[str, Any]:
            job = await self._submit(
                request, self.config.run_max_bytes, self.config.run_retention_s
            )
            return {"id": job.id, "status": job.status}

        @app.post(f"{base}/runsync")
        async def runsync(request: Request, wait: int = 90_000) -> dict[str, Any]:
            job = await self._submit(
                request, self.config.runsync_max_bytes, self.config.runsync_retention_s
            )
            with contextlib.suppress(TimeoutError):  # still running: answer with its status
                await asyncio.wait_for(job.done.wait(), min(max(wait, 1000), 300_000) / 1000)
            return job.view(self.config.record_delivery)

        @app.get(f"{base}/status/{{job_id}}")
        async def status(job_id: str) -> JSONResponse:
            job = self.jobs.get(job_id)
            if job is None:
                return JSONResponse(
                    {
                        "error": f"job {job_id} not found (never submitted, or "
                        "its result has expired)"
                    },
                    404,
                )
            return JSONResponse(job.view(self.config.record_delivery))

        @app.post(f"{base}/cancel/{{job_id}}")
        async def cancel(job_id: str) -> JSONResponse:
            job = self.jobs.get(job_id)
            if job is None:
                return JSONResponse({"error": f"job {job_id} not found"}, 404)
            job.finish("CANCELLED")
            return JSONResponse({"id": job.id, "status": job.status})

        @app.post(f"{base}/purge-queue")
        async def purge() -> dict[str, Any]:
            queued = [j for j in self.jobs.values() if j.status == "IN_QUEUE"]
            for job in queued:
                job.finish("CANCELLED")
            return {"removed": len(queued), "status": "completed"}

        @app.get(f"{base}/health")
        async def health() -> dict[str, Any]:
            waiting = sum(j.status == "IN_QUEUE" for j in self.jobs.values())
            return {
                "jobs": {**self.counts, "inProgress": self.busy, "inQueue": waiting},
                "workers": {
                    "idle": len(self.handlers) - self.busy,
                    "running": self.busy,
                    "initializing": 0,
                    "throttled": 0,
                    "unhealthy": 0,
                },
            }

        return app


def with_workers(config: EndpointConfig, settings: WorkerSettings, workers: int) -> Endpoint:
    """An endpoint whose slots each run the real handler on a BestOfN of their own."""
    if settings.keep_audio_dir:
        check_writable(settings.keep_audio_dir)
    loaded = [BestOfN.load(settings) for _ in range(workers)]
    return Endpoint(
        config, [partial(handle, worker=w, keep_audio=settings.keep_audio_dir) for w in loaded]
    )


class _HttpFaults:
    """ASGI wrapper that answers a drill's share of requests with an HTTP fault, or drops
    their connection: it promises a body and hangs up after one byte."""

    def __init__(self, app: Any, endpoint: "Endpoint") -> None:
        self.app, self.endpoint = app, endpoint

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        drawn = self.endpoint.drill.http_fault() if scope["type"] == "http" else None
        if drawn is None:
            await self.app(scope, receive, send)
            return
        fault, retry_after = drawn
        if fault == "drop":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", b"1000")]})  # fmt: skip
            await send({"type": "http.response.body", "body": b"{", "more_body": False})
            return
        status = 429 if fault == "throttle" else int(fault.removeprefix("http_"))
        headers = {"retry-after": f"{retry_after:g}"} if status == 429 else {}
        response = JSONResponse({"error": f"injected fault: HTTP {status}"}, status, headers)
        await response(scope, receive, send)


class Policy(BaseModel):
    """A job's `policy`, as RunPod reads it (fields it has that this endpoint ignores are
    accepted: ttl, lowPriority)."""

    model_config = ConfigDict(extra="allow")

    executionTimeout: int | None = Field(None, gt=0, le=24 * 3600 * 1000)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to be over `limit`: from its
    Content-Length before reading any of it, else while it arrives."""
    refusal = _Refusal(413, f"request body is over {limit:,} bytes, this operation's limit")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise refusal
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise refusal
    return bytes(body)


class _Refusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message
