"""The RunPod backend: chunks generated on a RunPod serverless endpoint, over its REST API.

AdaptiveLimit    this process's window of jobs in flight (halved on 429, grows back)
EndpointSlots    the endpoint's Prefect global concurrency limit, shared by every run
RunPodBackend    /run, then /status until done; cancels what it leaves behind
"""

import asyncio
import atexit
import contextlib
import contextvars
import logging
import random
import threading
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
from pydantic import ValidationError

from gpu_worker import voices
from gpu_worker.errors import InputError, PermanentError, TransientError
from gpu_worker.schema import GenerateRequest, GenerateResult
from gpu_worker.settings import WorkerSettings
from tasks.settings import NarratorSettings

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


class EndpointSlots:
    """This process's slots in the endpoint's Prefect global concurrency limit, shared by
    every run in every process that sends jobs to the endpoint. A job holds one while it is
    in flight (`held`).

    A slot is a lease asked of the Prefect server directly (one call each, side by side).
    A job that ends hands its lease to the next job of this process instead of giving it
    back; a lease handed on `reuse_seconds` or more after it was granted is renewed in the
    background (giving it back and asking anew cost each of 20 workers ~0.5 s, one round a
    minute). An idle lease is given back after `idle_seconds`, and every lease when the last
    job in flight ends.
    `reserve` takes the slots a run will need before its tasks start (the free ones only). On
    the temporary (SQLite) server every lease call waits behind the task runs' own writes:
    measured on 2 cores, a lease per job took 2.2 s median to acquire under a 50-chunk run
    and tripled its generation time. prefect.concurrency was slower still: it sends every
    acquisition in a process through one queue and, when the limit is full, waits the
    server's Retry-After (the limit's average hold). Here a full limit is asked again every
    `poll` seconds. Idle leases are given back when the process exits (`release_idle`); a
    lease lasts `lease_seconds` (longer than a job may run), so a process that is killed
    gives its slots back when its jobs would have timed out.
    """

    poll = 0.5
    attempts = 600  # asks while the limit is full or the server busy: about 5 minutes
    reuse_seconds = 60.0
    idle_seconds = 5.0

    def __init__(self, name: str, lease_seconds: float) -> None:
        self.name = name
        self.lease_seconds = lease_seconds + self.reuse_seconds
        # idle leases: ((lease id, when it was granted), idle since)
        self._idle: list[tuple[tuple[str, float], float]] = []
        self._client: Any = None
        self._renewing: set[asyncio.Future[None]] = set()
        self.active = 0  # jobs holding a lease now

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        if not self.name:
            yield
            return
        lease = self._idle.pop()[0] if self._idle else await self._acquire(wait=True)
        assert lease is not None
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1
            if self.active:
                self._keep(self._renewed(lease))
            else:  # the last job in flight gives every lease back: the run is done
                self._idle.append((lease, time.monotonic()))
                await asyncio.shield(self.release_idle())

    async def reserve(self, slots: int) -> None:
        """Take up to `slots` free slots now, one after another, without waiting for
        others' to free up."""
        while self.name and len(self._idle) < slots:
            lease = await self._acquire(wait=False)
            if lease is None:
                return
            self._keep(lease)

    def _renewed(self, lease: tuple[str, float]) -> tuple[str, float]:
        """`lease`, renewed in the background (and so as good as new) if it is old enough
        that it might expire while its next job runs."""
        lease_id, granted = lease
        if time.monotonic() - granted < self.reuse_seconds:
            return lease
        renewal = asyncio.ensure_future(self._renew(lease_id))
        self._renewing.add(renewal)  # held until done: the loop keeps only weak references
        renewal.add_done_callback(self._renewing.discard)
        return lease_id, time.monotonic()

    async def _renew(self, lease_id: str) -> None:
        try:
            client = await self._prefect()
            await client.renew_concurrency_lease(lease_id, self.lease_seconds)
        except httpx.HTTPError as e:  # the lease then ends early: one slot over the limit
            log.warning("could not renew a lease of %r: %s", self.name, e)

    def _keep(self, lease: tuple[str, float]) -> None:
        entry = (lease, time.monotonic())
        self._idle.append(entry)
        asyncio.get_running_loop().call_later(
            self.idle_seconds, lambda: asyncio.ensure_future(self._release_idle(entry))
        )

    async def release_idle(self) -> None:
        """Give back every lease no job holds."""
        idle, self._idle = self._idle, []
        await asyncio.gather(*(self._release(lease[0]) for lease, _ in idle))

    async def _release_idle(self, entry: tuple[tuple[str, float], float]) -> None:
        """Give a lease back if it has been idle since `entry` was made."""
        if entry in self._idle:
            self._idle.remove(entry)
            await self._release(entry[0][0])

    async def _acquire(self, wait: bool) -> tuple[str, float] | None:
        """A new lease; None if the limit is full and `wait` is False. A full limit is
        asked again every `poll` seconds; a server that cannot answer (a 5xx: SQLite's
        write lock, say) is asked again too, up to `attempts` asks in all, after which the
        job fails as transient (its task retries it)."""
        client = await self._prefect()
        for attempt in range(self.attempts):
            try:
                response = await client.increment_concurrency_slots_with_lease(
                    [self.name], 1, "concurrency", self.lease_seconds
                )
            except httpx.HTTPStatusError as e:
                code = e.response.status_code
                if code == 423 and not wait:  # 423 Locked: every slot is taken
                    return None
                if code != 423 and code < 500:
                    raise
                await asyncio.sleep(min(_retry_after(e.response) or self.poll, self.poll))
                continue
            except httpx.TransportError:
                await asyncio.sleep(_backoff(attempt))
                continue
            body = response.json()
            if not body.get("limits"):
                raise InputError(
                    f"the Prefect global concurrency limit {self.name!r} does not exist; "
                    "narrate_chapter creates it, or set NARRATOR_ENDPOINT_LIMIT='' for none"
                )
            return str(body["lease_id"]), time.monotonic()
        raise TransientError(f"no slot in the Prefect concurrency limit {self.name!r} yet")

    async def _prefect(self) -> Any:
        """One Prefect client for every lease call, made on first use in the caller's
        settings context."""
        if self._client is None:
            from prefect.client.orchestration import get_client

            client = get_client()
            await client.__aenter__()
            self._client = client
        return self._client

    async def _release(self, lease_id: str) -> None:
        with contextlib.suppress(httpx.HTTPError):
            client = await self._prefect()
            await client.release_concurrency_slots_with_lease(lease_id)


class RunPodBackend:
    """Generates chunks on a RunPod serverless endpoint: /run, then /status until done.

    Not the runpod SDK's client: it returns None for a FAILED job (the worker's error
    message is lost), reads the API key only from its own config file, and retries only
    plain-http failures. This is a small async httpx client on the documented REST API
    instead. It runs on one event loop of its own (one connection pool; every chunk's
    polling multiplexed), behind the same blocking `generate` the tasks call. At most
    `runpod_concurrency` jobs are in flight, fewer while the endpoint throttles
    (AdaptiveLimit); a job takes this process's slot first and the endpoint's global
    slot (shared by every run) second, so one run never queues at the Prefect server for
    a slot it could not use. A job's status is polled sparsely while it is queued or far
    from done, just after its expected end (judged by how long finished jobs ran), and
    then every few hundredths of a second at first, every `first_poll` seconds later: a
    result is seen within ~0.02-0.1 s without a flood of polls. 429s and 5xxs are retried
    here with backoff and jitter, honouring Retry-After; what still fails is classified:
    TransientError (5xx, 429, timeouts, connection errors, TIMED_OUT, a worker out of
    memory) or PermanentError (refused key, bad request, a FAILED job's own error,
    undecodable output). A job whose wait is interrupted (the flow run cancelled) is
    cancelled on the endpoint.
    """

    name = "runpod"
    attempts = 5  # per HTTP call, for 429 / 5xx / connection errors
    first_poll = 0.1  # seconds between polls of a job past its expected end
    closest_poll = 0.02  # ... and of a job that has just reached it
    slowest_poll = 1.0  # seconds between polls of a job queued or far from done
    # HTTP connections kept open to the API. Calls are short (a job is mostly waited for,
    # not talked to), and httpcore checks every pooled connection on each call (a socket
    # poll each): with one per job in flight (33 for 25 jobs) a call took ~20 ms of CPU
    # while a round of results came back (profiled). 8 carry ~80 calls a second at
    # RunPod's ~0.1 s a call.
    connections = 8

    def __init__(self, settings: NarratorSettings, api_key: str, worker: WorkerSettings) -> None:
        if not settings.runpod_endpoint_id:
            raise InputError("backend runpod needs NARRATOR_RUNPOD_ENDPOINT_ID")
        self.settings, self.worker_settings = settings, worker
        self._base = f"{settings.runpod_base_url.rstrip('/')}/{settings.runpod_endpoint_id}"
        self._key = api_key
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="runpod-client", daemon=True).start()
        self._client, self.limit = self._call(self._open())
        self.slots = EndpointSlots(
            settings.endpoint_limit, lease_seconds=settings.runpod_job_timeout + 120
        )
        atexit.register(self.close)
        self.jobs_submitted = 0
        self.in_flight: set[str] = set()
        self.typical_run: float | None = None  # seconds a job runs (moving average)
        self._first_finished = asyncio.Event()  # typical_run is known

    async def _open(self) -> tuple[httpx.AsyncClient, AdaptiveLimit]:
        client = httpx.AsyncClient(
            headers={"authorization": f"Bearer {self._key}"},
            timeout=httpx.Timeout(30.0),
            limits=httpx.Limits(
                max_connections=self.connections, max_keepalive_connections=self.connections
            ),
        )
        return client, AdaptiveLimit(self.settings.runpod_concurrency)

    def _call(self, coroutine: Any) -> Any:
        """Run `coroutine` on the client's loop in the caller's context (Prefect's settings
        and run context travel with it) and wait for its answer."""
        context = contextvars.copy_context()

        async def in_context() -> Any:
            return await asyncio.get_running_loop().create_task(coroutine, context=context)

        future = asyncio.run_coroutine_threadsafe(in_context(), self._loop)
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

    def prepare(self, jobs: int) -> None:
        """Create or resize the endpoint's global limit and take its free slots for the
        first `jobs` jobs, while the Prefect server is not yet busy with their task runs."""
        ensure_endpoint_limit(self.settings)
        if jobs:
            self._call(self.slots.reserve(min(jobs, int(self.limit.window))))

    def generate(self, request: GenerateRequest) -> GenerateResult:
        """One job, in this process's window and in the endpoint's global limit."""
        return cast(GenerateResult, self._call(self._generate(request)))

    async def _generate(self, request: GenerateRequest) -> GenerateResult:
        async with self.limit.slot(), self.slots.held():
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
                self._learn(status)
                return status
            delay = min(delay * 1.5, self.slowest_poll)
            pause = self._next_poll(status, delay)
            if self.typical_run is None:  # the first job to finish wakes every waiting one
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._first_finished.wait(), pause)
            else:
                await asyncio.sleep(pause)

    def _next_poll(self, status: dict[str, Any], backoff: float) -> float:
        """Seconds to the next poll. While the job runs: until just after its expected end,
        then `closest_poll` to `first_poll` apart, the further it has run over the longer,
        so a job that ends on time is seen within a few hundredths of a second and one that
        overruns is not polled in a flood. While it is queued, or nothing has finished yet
        to judge by: the backoff (jittered, so the first round's polls are not in step)."""
        ran = status.get("executionTime")
        if self.typical_run is None:  # nothing to judge by yet: poll often
            return min(backoff, 4 * self.first_poll) * random.uniform(0.5, 1.5)
        if status.get("status") != "IN_PROGRESS" or ran is None:
            return backoff
        left = self.typical_run - ran / 1000
        if left > 0:
            return min(left + self.closest_poll / 2, self.slowest_poll)
        return min(max(-left, self.closest_poll), self.first_poll)

    def _learn(self, status: dict[str, Any]) -> None:
        ran = status.get("executionTime")
        if status.get("status") != "COMPLETED" or ran is None:
            return
        seconds = ran / 1000
        previous = self.typical_run
        self.typical_run = seconds if previous is None else 0.8 * previous + 0.2 * seconds
        self._first_finished.set()

    def close(self) -> None:
        """Give the endpoint's idle slots back (at exit: other runs need not wait for
        their leases to expire)."""
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.slots.release_idle(), self._loop).result(10)

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
