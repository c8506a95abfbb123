"""The RunPod backend's HTTP client: /run, /status until done, /cancel what is left."""

import asyncio
import atexit
import contextlib
import contextvars
import logging
import random
import threading
from typing import Any, cast

import httpx
from pydantic import ValidationError

from gpu_worker import voices
from gpu_worker.errors import InputError, PermanentError, TransientError, from_wire
from gpu_worker.schema import NO_DIGEST, GenerateRequest, GenerateResult
from gpu_worker.settings import WorkerSettings
from tasks.backends.runpod.retry import backoff, retry_after
from tasks.backends.runpod.slots import EndpointSlots, ensure_endpoint_limit
from tasks.backends.runpod.window import AdaptiveLimit
from tasks.settings import NarratorSettings

log = logging.getLogger("narrator.runpod")


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
    TransientError (5xx, 429, timeouts, connection errors, TIMED_OUT) or PermanentError
    (refused key, bad request, output that is not a result); a FAILED job's error is the
    worker's own wire error (gpu_worker/errors.py), raised as what it says. A job whose wait
    is interrupted (the flow run cancelled) is cancelled on the endpoint.
    """

    name = "runpod"
    billed_per_take = False  # by the GPU second: best-of-N decodes a round together
    uses_neighbours = False
    attempts = 5  # per HTTP call, for 429 / 5xx / connection errors
    first_poll = 0.1  # seconds between polls of a job past its expected end
    closest_poll = 0.02  # ... and of a job that has just reached it
    slowest_poll = 1.0  # seconds between polls of a job queued or far from done
    # HTTP connections kept open to the API. Calls are short (a job is mostly waited for,
    # not talked to) and httpcore checks every pooled connection on each call, so a few
    # carry the traffic best: 8 carry ~80 calls a second at RunPod's ~0.1 s a call.
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
        # /run calls whose answer was lost after the request went out, or carried no id:
        # the endpoint may have queued a job we cannot see (paid for, never read)
        self.unconfirmed_jobs = 0
        self.in_flight: set[str] = set()
        self._job_ids: set[str] = set()  # every job id this process was given
        self.stopping = False  # set by stop(): no more jobs
        self.outdated = False  # the endpoint runs an image older than this client
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
            if self.stopping:  # checked once a slot is ours: waiting jobs see it too
                raise PermanentError("the run is stopping: no more jobs are sent")
            if self.outdated:
                raise PermanentError(NO_DIGEST)
            job = await self._request(
                "POST",
                "/run",
                json={
                    "input": request.model_dump(mode="json"),
                    "policy": {"executionTimeout": int(self.settings.runpod_job_timeout * 1000)},
                },
            )
            self.jobs_submitted += 1
            job_id = self._new_job_id(job)
            self.in_flight.add(job_id)
            try:
                async with asyncio.timeout(self.settings.runpod_job_timeout):
                    status = await self._wait(job_id)
            except BaseException as stopped:  # stopped, timed out, or its status unreadable
                await asyncio.shield(self._cancel(job_id))
                if isinstance(stopped, TimeoutError):
                    raise TransientError(
                        f"job {job_id} took longer than "
                        f"{self.settings.runpod_job_timeout:g} s; cancelled"
                    ) from stopped
                raise
            finally:
                self.in_flight.discard(job_id)
            if status.get("status") == "COMPLETED":
                await self.limit.succeeded()
        if self.stopping and status.get("status") == "CANCELLED":
            raise PermanentError(f"job {job_id} cancelled: the run is stopping")
        result = _result(job_id, status)
        if result.request_sha256 is None:  # every later job would be paid for and refused
            self.outdated = True
            raise PermanentError(NO_DIGEST)
        return result

    def _new_job_id(self, answer: dict[str, Any]) -> str:
        """The job id /run answered with; it must be one this process has not seen before,
        or the two jobs' results could be taken for each other."""
        job_id = answer.get("id")
        if not isinstance(job_id, str) or not job_id:
            self.unconfirmed_jobs += 1
            log.warning(
                "RunPod answered /run without a job id (fields: %s); if it queued the job "
                "anyway, this chunk is paid for twice (%d such answers so far)",
                ", ".join(sorted(map(str, answer))) or "none",
                self.unconfirmed_jobs,
            )
            raise TransientError("RunPod answered /run without a job id; submitting again")
        if job_id in self._job_ids:
            self.unconfirmed_jobs += 1  # the job this /run made has an id we were not told
            log.warning(
                "RunPod gave job id %s to two requests; the second request's own job cannot "
                "be seen (paid for, never read: %d such answers so far)",
                job_id,
                self.unconfirmed_jobs,
            )
            raise TransientError(
                f"RunPod gave job id {job_id} to two requests; trusting neither answer, "
                "submitting again"
            )
        self._job_ids.add(job_id)
        return job_id

    async def _wait(self, job_id: str) -> dict[str, Any]:
        delay = self.first_poll
        while True:
            if self.stopping:  # a job submitted as the run was told to stop: cancelled too
                raise PermanentError(f"job {job_id} cancelled: the run is stopping")
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

    def _next_poll(self, status: dict[str, Any], fallback: float) -> float:
        """Seconds to the next poll. While the job runs: until just after its expected end,
        then `closest_poll` to `first_poll` apart, the further it has run over the longer,
        so a job that ends on time is seen within a few hundredths of a second and one that
        overruns is not polled in a flood. While it is queued, or nothing has finished yet
        to judge by: `fallback`, a backoff (jittered, so the first round's polls are not in
        step)."""
        ran = status.get("executionTime")
        if self.typical_run is None:  # nothing to judge by yet: poll often
            return min(fallback, 4 * self.first_poll) * random.uniform(0.5, 1.5)
        if status.get("status") != "IN_PROGRESS" or ran is None:
            return fallback
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

    def stop(self, within: float = 2.0) -> int:
        """Send no more jobs, and cancel every job in flight within `within` seconds (the
        process is told to stop); returns how many were in flight."""
        self.stopping = True
        return self.cancel_all(within)

    def cancel_all(self, within: float = 2.0) -> int:
        """Cancel every job in flight within `within` seconds (a flow run was cancelled or
        crashed; other runs of this process go on); returns how many there were."""
        jobs = list(self.in_flight)

        async def cancel() -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(self._cancel(j) for j in jobs)), within)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(cancel(), self._loop).result(within + 0.5)
        return len(jobs)

    async def _cancel(self, job_id: str) -> None:
        with contextlib.suppress(httpx.HTTPError):  # best effort: its timeout ends it anyway
            await self._client.post(f"{self._base}/cancel/{job_id}")

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One API call, retried on 429 / 5xx / connection errors / a body that is not a
        JSON object; returns that object. What the API sent is described, never echoed: an
        error page or a proxy's answer may carry credentials."""
        failure = ""
        for attempt in range(self.attempts):
            try:
                response = await self._client.request(method, self._base + path, **kwargs)
            except httpx.TransportError as e:
                failure, wait = f"{type(e).__name__}", None
                if path == "/run" and not isinstance(e, httpx.ConnectError | httpx.ConnectTimeout):
                    self._lost_submission(type(e).__name__)
            else:
                code = response.status_code
                if code < 300:
                    body = _json_object(response)
                    if body is not None:
                        return body
                    failure, wait = f"{path} answered HTTP {code} with {_described(response)}", None
                    if path == "/run":
                        self._lost_submission("an answer that is not a job")
                else:
                    _refuse(response, path)
                    if code == 429:
                        self.limit.throttled()
                    failure = f"HTTP {code} from {path} ({_described(response)})"
                    wait = retry_after(response)
            await asyncio.sleep(wait if wait is not None else backoff(attempt))
        raise TransientError(f"RunPod API still failing after {self.attempts} attempts: {failure}")

    def _lost_submission(self, what: str) -> None:
        self.unconfirmed_jobs += 1
        log.warning(
            "the answer to a /run call was lost (%s); submitting again: if RunPod queued the "
            "first, this chunk is paid for twice (%d such calls so far)",
            what,
            self.unconfirmed_jobs,
        )


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _described(response: httpx.Response) -> str:
    """A response as its kind and size, plus the API's own `error` text when it is JSON
    (cut short): enough to tell a login page from a throttle, nothing of its contents."""
    kind = response.headers.get("content-type", "no content type").split(";")[0]
    described = f"{kind}, {len(response.content):,} bytes"
    body = _json_object(response)
    if body and isinstance(body.get("error"), str):
        described += f": {body['error'][:160]}"
    return described


def _refuse(response: httpx.Response, path: str) -> None:
    """Raise for an answer no retry of the same call can change."""
    code = response.status_code
    if 300 <= code < 400:
        host = httpx.URL(response.headers.get("location", "")).host or "elsewhere"
        raise PermanentError(
            f"RunPod answered {path} with a redirect (HTTP {code}, to {host}); the API never "
            "redirects: check NARRATOR_RUNPOD_BASE_URL"
        )
    if code in (401, 403):
        raise PermanentError(
            f"RunPod refused the API key (HTTP {code}); check "
            "NARRATOR_RUNPOD_API_KEY or the runpod-api-key Secret block"
        )
    if code == 404 and path.startswith("/status/"):
        raise TransientError(
            f"job {path.removeprefix('/status/')} is gone from the endpoint (HTTP 404 on its "
            "status: the endpoint restarted or forgot it); submitting again"
        )
    if code == 404 and path in ("/run", "/runsync"):
        raise PermanentError(
            "RunPod endpoint not found (HTTP 404): check "
            "NARRATOR_RUNPOD_ENDPOINT_ID and NARRATOR_RUNPOD_BASE_URL"
        )
    if 400 <= code < 500 and code != 429:
        raise PermanentError(f"RunPod refused {path} (HTTP {code}, {_described(response)})")


def _result(job_id: str, status: dict[str, Any]) -> GenerateResult:
    """A finished job's result, or the error it stands for (gpu_worker/errors.py)."""
    state = status.get("status")
    if state == "COMPLETED":
        try:
            return GenerateResult.model_validate(status.get("output"))
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "output"
            raise TransientError(
                f"job {job_id} COMPLETED with output that is not a result ({where}: "
                f"{first['msg']}); asking again"
            ) from e
    if state == "FAILED":
        raise from_wire(status.get("error") or "", f"job {job_id} FAILED on the worker")
    # TIMED_OUT or CANCELLED by the endpoint: another worker may well finish it
    raise TransientError(f"job {job_id} {state} on the worker: {status.get('error') or state}")
