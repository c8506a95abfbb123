"""Where a chunk's audio is made. Every backend speaks the worker's wire contract
(GenerateRequest in, GenerateResult out), so the flow cannot tell them apart.

    LocalBackend    the worker code in this process (embedded CPU engine by default)
    RunPodBackend   a RunPod serverless endpoint, over its REST API
"""

import asyncio
import contextlib
import logging
import queue
import random
import threading
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol, cast

import httpx
from pydantic import ValidationError

from gpu_worker import voices
from gpu_worker.errors import InputError, PermanentError, TransientError
from gpu_worker.generate import Worker
from gpu_worker.schema import GenerateRequest, GenerateResult
from gpu_worker.settings import WorkerSettings
from tasks.settings import NarratorSettings


class Backend(Protocol):
    name: str

    def identity(self, voice: str | None) -> str:
        """Everything about the backend that changes the audio for `voice` (cache key part)."""
        ...

    def voice_fingerprint(self, audio_prompt_url: str) -> str:
        """sha256 of a reference clip's bytes (the cache key uses it, never the URL: a
        presigned URL changes every run, the voice does not)."""
        ...

    def generate(self, request: GenerateRequest) -> GenerateResult:
        """Best-of-N audio for one chunk. Raises TransientError or PermanentError."""
        ...


class LocalBackend:
    """Runs `gpu_worker` in-process: up to `workers` chunks at once, each on its own Worker
    (engine + Whisper model), created on first use and kept for the life of the process."""

    name = "local"

    def __init__(self, settings: WorkerSettings, workers: int) -> None:
        self.settings = settings
        self.workers = workers
        self._idle: queue.Queue[Worker] = queue.Queue()
        self._created = 0
        self._lock = threading.Lock()
        self.requests = 0  # generate() calls served: a cached rerun leaves it unchanged

    def identity(self, voice: str | None) -> str:
        worker = self._acquire()
        try:
            return worker.identity(voice)
        finally:
            self._idle.put(worker)

    def voice_fingerprint(self, audio_prompt_url: str) -> str:
        """The clip is checked here, before any chunk is generated: a clip that is not
        usable, or an engine that cannot clone, fails the run at once."""
        worker = self._acquire()
        try:
            engine = worker.engine
            reference = voices.load_reference(audio_prompt_url, self.settings, engine.sample_rate)
            if not engine.clones:
                raise InputError(
                    f"the {engine.name} engine has built-in voices only "
                    f"({', '.join(engine.voices())}) and cannot clone {audio_prompt_url!r}; "
                    "use NARRATOR_ENGINE=chatterbox or --backend runpod"
                )
            return reference.sha256
        finally:
            self._idle.put(worker)

    def generate(self, request: GenerateRequest) -> GenerateResult:
        with self._lock:
            self.requests += 1
        worker = self._acquire()
        try:
            return worker.generate(request)
        finally:
            self._idle.put(worker)

    def _acquire(self) -> Worker:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            create = self._created < self.workers
            if create:
                self._created += 1
        if create:
            try:
                return Worker.load(self.settings)
            except BaseException:
                with self._lock:
                    self._created -= 1
                raise
        return self._idle.get()


log = logging.getLogger("narrator.runpod")


class AdaptiveLimit:
    """How many jobs may be in flight on the endpoint, adapted to its answers (AIMD).

    The window starts at `ceiling`. A throttled answer (HTTP 429) halves it, at most once
    per `cooldown` seconds (one burst of 429s is one signal); every finished job adds
    1/window, so a full window of successes adds one. Never below 1 nor above `ceiling`.
    `history` records (seconds since start, window) at every whole-number change.
    """

    def __init__(self, ceiling: int, cooldown: float = 1.0) -> None:
        self.ceiling, self.cooldown = ceiling, cooldown
        self.window = float(ceiling)
        self.in_flight = 0
        self.history: list[tuple[float, int]] = [(0.0, ceiling)]
        self._started = time.monotonic()
        self._last_cut = -cooldown
        self._changed: asyncio.Condition | None = None  # made on the event loop's thread

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._changed is None:
            self._changed = asyncio.Condition()
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < int(self.window))
            self.in_flight += 1
        try:
            yield
        finally:
            async with self._changed:
                self.in_flight -= 1
                self._changed.notify_all()

    def throttled(self) -> None:
        now = time.monotonic() - self._started
        if now - self._last_cut < self.cooldown:
            return
        self._last_cut = now
        before = int(self.window)
        self.window = max(1.0, self.window / 2)
        self._record(now, before, "throttled (HTTP 429)")

    async def succeeded(self) -> None:
        before = int(self.window)
        self.window = min(float(self.ceiling), self.window + 1 / self.window)
        self._record(time.monotonic() - self._started, before, "recovering")
        if self._changed is not None and int(self.window) > before:
            async with self._changed:
                self._changed.notify_all()

    def _record(self, now: float, before: int, why: str) -> None:
        if int(self.window) != before:
            self.history.append((round(now, 3), int(self.window)))
            log.warning("%s: jobs in flight %d -> %d", why, before, int(self.window))


class RunPodBackend:
    """Generates chunks on a RunPod serverless endpoint: /run, then /status until done.

    Not the runpod SDK's client: it returns None for a FAILED job (the worker's error
    message is lost), reads the API key only from its own config file, and retries only
    plain-http failures. This is a small async httpx client on the documented REST API
    instead. It runs on one event loop of its own (one connection pool; every chunk's
    polling multiplexed), behind the same blocking `generate` the tasks call. At most
    `runpod_concurrency` jobs are in flight, fewer while the endpoint throttles
    (AdaptiveLimit). 429s and 5xxs are retried here with backoff
    and jitter, honouring Retry-After; what still fails is classified: TransientError (5xx,
    429, timeouts, connection errors, TIMED_OUT, a worker out of memory) or PermanentError
    (refused key, bad request, a FAILED job's own error, undecodable output). A job whose
    wait is interrupted (the flow run cancelled) is cancelled on the endpoint.
    """

    name = "runpod"
    attempts = 5  # per HTTP call, for 429 / 5xx / connection errors
    first_poll = 0.1  # seconds; polling backs off to `slowest_poll`
    slowest_poll = 1.0

    def __init__(self, settings: NarratorSettings, api_key: str, worker: WorkerSettings) -> None:
        if not settings.runpod_endpoint_id:
            raise InputError("backend runpod needs NARRATOR_RUNPOD_ENDPOINT_ID")
        self.settings, self.worker_settings = settings, worker
        self._base = f"{settings.runpod_base_url.rstrip('/')}/{settings.runpod_endpoint_id}"
        self._key = api_key
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="runpod-client", daemon=True).start()
        self._client, self.limit = self._call(self._open())
        self.jobs_submitted = 0
        self.in_flight: set[str] = set()

    async def _open(self) -> tuple[httpx.AsyncClient, AdaptiveLimit]:
        limit = self.settings.runpod_concurrency
        client = httpx.AsyncClient(
            headers={"authorization": f"Bearer {self._key}"},
            timeout=httpx.Timeout(30.0),
            limits=httpx.Limits(max_connections=limit + 8, max_keepalive_connections=limit + 8),
        )
        return client, AdaptiveLimit(limit)

    def _call(self, coroutine: Any) -> Any:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # the coroutine cancels its job on the endpoint
            raise

    def identity(self, voice: str | None) -> str:
        deployed = self.settings.runpod_identity or f"runpod:{self.settings.runpod_endpoint_id}"
        return f"{deployed} voice={voice or 'default'}"

    def voice_fingerprint(self, audio_prompt_url: str) -> str:
        if audio_prompt_url.startswith("/"):
            raise InputError(
                f"{audio_prompt_url} is on this machine, where RunPod workers cannot read it; "
                "keep the voice library in S3 (NARRATOR_VOICE_LIBRARY=s3://bucket/voices)"
            )
        try:
            return voices.fingerprint(audio_prompt_url, self.worker_settings)
        except InputError:
            if "://" in audio_prompt_url:
                raise
            return f"volume:{audio_prompt_url}"  # only the workers see their volume

    def generate(self, request: GenerateRequest) -> GenerateResult:
        """One job. Its slot in the endpoint's Prefect global concurrency limit is held while
        it is in flight, so every run in every process shares the endpoint's workers."""
        name = self.settings.endpoint_limit
        if not name:
            return cast(GenerateResult, self._call(self._generate(request)))
        from prefect.concurrency.sync import concurrency

        with concurrency(name, occupy=1, strict=True):
            return cast(GenerateResult, self._call(self._generate(request)))

    async def _generate(self, request: GenerateRequest) -> GenerateResult:
        async with self.limit.slot():
            job = await self._request(
                "POST",
                "/run",
                json={
                    "input": request.model_dump(mode="json"),
                    "policy": {"executionTimeout": int(self.settings.runpod_job_timeout * 1000)},
                },
            )
            self.jobs_submitted += 1
            self.in_flight.add(job["id"])
            try:
                async with asyncio.timeout(self.settings.runpod_job_timeout):
                    status = await self._wait(job["id"])
            except (asyncio.CancelledError, TimeoutError) as stopped:
                await asyncio.shield(self._cancel(job["id"]))
                if isinstance(stopped, TimeoutError):
                    raise TransientError(
                        f"job {job['id']} took longer than "
                        f"{self.settings.runpod_job_timeout:g} s; cancelled"
                    ) from stopped
                raise
            finally:
                self.in_flight.discard(job["id"])
            if status.get("status") == "COMPLETED":
                await self.limit.succeeded()
        return _result(job["id"], status)

    async def _wait(self, job_id: str) -> dict[str, Any]:
        delay = self.first_poll
        while True:
            status = await self._request("GET", f"/status/{job_id}")
            if status.get("status") in ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"):
                return status
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, self.slowest_poll)

    def cancel_all(self) -> int:
        """Cancel every job still in flight (a flow run was cancelled); returns how many."""
        jobs = list(self.in_flight)

        async def cancel() -> None:
            await asyncio.gather(*(self._cancel(job) for job in jobs))

        self._call(cancel())
        return len(jobs)

    async def _cancel(self, job_id: str) -> None:
        with contextlib.suppress(httpx.HTTPError):  # best effort: its timeout ends it anyway
            await self._client.post(f"{self._base}/cancel/{job_id}")

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One API call, retried on 429 / 5xx / connection errors; returns its JSON."""
        failure = ""
        for attempt in range(self.attempts):
            try:
                response = await self._client.request(method, self._base + path, **kwargs)
            except httpx.TransportError as e:
                failure, wait = f"{type(e).__name__}: {e}", None
            else:
                if response.status_code < 400:
                    body: dict[str, Any] = response.json()
                    return body
                _refuse_permanently(response, path)
                if response.status_code == 429:
                    self.limit.throttled()
                failure = f"HTTP {response.status_code} from {path}: {response.text[:200]}"
                wait = _retry_after(response)
            await asyncio.sleep(wait if wait is not None else _backoff(attempt))
        raise TransientError(f"RunPod API still failing after {self.attempts} attempts: {failure}")


def _refuse_permanently(response: httpx.Response, path: str) -> None:
    code = response.status_code
    if code in (401, 403):
        raise PermanentError(
            f"RunPod refused the API key (HTTP {code}); check "
            "NARRATOR_RUNPOD_API_KEY or the runpod-api-key Secret block"
        )
    if code == 404 and path in ("/run", "/runsync"):
        raise PermanentError(
            "RunPod endpoint not found (HTTP 404): check "
            "NARRATOR_RUNPOD_ENDPOINT_ID and NARRATOR_RUNPOD_BASE_URL"
        )
    if 400 <= code < 500 and code != 429:
        raise PermanentError(f"RunPod refused {path} (HTTP {code}): {response.text[:300]}")


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return min(60.0, float(response.headers["retry-after"]))
    except (KeyError, ValueError):
        return None


def _backoff(attempt: int) -> float:
    return min(10.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.5)


TRANSIENT_FAILURES = ("TransientError", "out of memory", "CUDA error", "timed out")


def _result(job_id: str, status: dict[str, Any]) -> GenerateResult:
    state = status.get("status")
    if state == "COMPLETED":
        try:
            return GenerateResult.model_validate(status.get("output"))
        except ValidationError as e:
            raise PermanentError(
                f"job {job_id} returned output that is not a GenerateResult: {e.errors()[0]['msg']}"
            ) from e
    error = str(status.get("error") or state)
    if state == "FAILED" and not any(mark in error for mark in TRANSIENT_FAILURES):
        raise PermanentError(f"job {job_id} FAILED on the worker: {error}")
    raise TransientError(f"job {job_id} {state} on the worker: {error}")


def ensure_endpoint_limit(settings: NarratorSettings) -> None:
    """Create, or resize, the endpoint's global concurrency limit to `runpod_concurrency`
    (idempotent: every chapter run calls it at its start)."""
    if not settings.endpoint_limit:
        return
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(
            settings.endpoint_limit, settings.runpod_concurrency
        )


def api_key(settings: NarratorSettings) -> str:
    """NARRATOR_RUNPOD_API_KEY, else the Prefect Secret block named in the settings."""
    if settings.runpod_api_key is not None:
        return settings.runpod_api_key.get_secret_value()
    from prefect.blocks.system import Secret

    try:
        secret = cast(Secret, Secret.load(settings.runpod_api_key_block))
    except ValueError as e:
        raise InputError(
            f"no RunPod API key: set NARRATOR_RUNPOD_API_KEY or create the "
            f"Prefect Secret block {settings.runpod_api_key_block!r}"
        ) from e
    return str(secret.get())


_OPEN: dict[tuple[object, ...], Backend] = {}
_OPEN_LOCK = threading.Lock()


def open_backend(settings: NarratorSettings, worker: WorkerSettings) -> Backend:
    """The backend the settings name, shared per process: local models load once however
    many chapters a process narrates, and RunPod jobs share one connection pool."""
    key: tuple[object, ...] = (
        (settings.backend, worker, settings.local_workers)
        if settings.backend == "local"
        else (settings.backend, settings)
    )
    with _OPEN_LOCK:
        if key not in _OPEN:
            _OPEN[key] = (
                LocalBackend(worker, settings.local_workers)
                if settings.backend == "local"
                else RunPodBackend(settings, api_key(settings), worker)
            )
        return _OPEN[key]


def cancel_remote_jobs() -> int:
    """Cancel the in-flight jobs of every RunPod backend this process opened."""
    with _OPEN_LOCK:
        remote = [b for b in _OPEN.values() if isinstance(b, RunPodBackend)]
    return sum(backend.cancel_all() for backend in remote)
