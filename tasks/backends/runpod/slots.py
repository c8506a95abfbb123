"""The RunPod endpoint's Prefect global concurrency limit, as leases shared by all runs."""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from gpu_worker.errors import InputError, TransientError
from tasks.backends.runpod.retry import backoff, retry_after
from tasks.settings import NarratorSettings

log = logging.getLogger("narrator.runpod")


class EndpointSlots:
    """This process's slots in the endpoint's Prefect global concurrency limit, shared by
    every run in every process that sends jobs to the endpoint. A job holds one while it is
    in flight (`held`).

    A slot is a lease asked of the Prefect server directly (one call each, side by side),
    not through prefect.concurrency, which queues every acquisition of a process behind one
    another and waits the server's Retry-After when the limit is full; here a full limit is
    asked again every `poll` seconds. A lease costs a call to a server that may be busy
    with the run's own task runs, so leases are reused: a job that ends hands its lease to
    the next job of this process; one handed on `reuse_seconds` or more after it was granted
    is renewed in the background. An idle lease is given back after `idle_seconds`, and every
    lease when the last job in flight ends or the process exits (`release_idle`).
    `reserve` takes the slots a run will need before its tasks start (the free ones only).
    A lease lasts `lease_seconds` (longer than a job may run), so a process that is killed
    gives its slots back when its jobs would have timed out. docs/PERFORMANCE.md has the
    measurements behind these choices.
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
                await asyncio.sleep(min(retry_after(e.response) or self.poll, self.poll))
                continue
            except httpx.TransportError:
                await asyncio.sleep(backoff(attempt))
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
