"""This process's window of jobs in flight on the endpoint, adapted to its answers (AIMD)."""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

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
