"""Fault drills for the local endpoint: what a real endpoint does wrong, on purpose.

At a chosen rate, or on the next requests.

    narrator endpoint --faults '{"rate": 0.2}'                       every kind, 20 %
    narrator endpoint --faults '{"rate": 1, "kinds": ["throttle"]}'  sustained 429s

Two layers, each drawing on its own at `rate`:

- each HTTP request: answered 500, 502 or 503, answered 429 with Retry-After (throttle), or
  its connection dropped before any answer (drop);
- each job a worker takes: it never finishes and ends TIMED_OUT at its execution timeout
  (hang), FAILED with a transient worker error such as CUDA out of memory (oom), COMPLETED
  with corrupt audio (corrupt), or it takes `slow_seconds` longer and then succeeds (slow).

A job whose text contains one of `permanent_texts` always FAILS with a permanent error.
`FaultDrill.schedule` answers the next requests with a chosen status, whatever the rate.
Job faults are drawn from a hash of (seed, text, how many times that text was submitted),
so a drill with a given seed faults the same takes whatever the timing: a rerun of a test
sees the same faults. Every fault is counted by kind in `FaultDrill.injected`.
"""

import hashlib
import random
import threading
from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gpu_worker.errors import PermanentError, TransientError

Kind = Literal[
    "http_500", "http_502", "http_503", "throttle", "drop", "hang", "oom", "corrupt", "slow"
]
HTTP_FAULTS: tuple[Kind, ...] = ("http_500", "http_502", "http_503", "throttle", "drop")
JOB_FAULTS: tuple[Kind, ...] = ("hang", "oom", "corrupt", "slow")
OOM_ERROR = TransientError("CUDA out of memory (injected fault)", code="out_of_memory")
PERMANENT_ERROR = PermanentError("the worker cannot read this input (injected permanent fault)")


class FaultProfile(BaseModel):
    """How often, and how, the local endpoint misbehaves."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rate: float = Field(0.0, ge=0.0, le=1.0, description="Share of requests and of jobs faulted.")
    kinds: list[Kind] = Field(
        default_factory=lambda: [*HTTP_FAULTS, *JOB_FAULTS],
        description="Which faults to draw from (default: all of them).",
    )
    retry_after: float = Field(1.0, ge=0.0, description="Seconds in a 429's Retry-After.")
    slow_seconds: float = Field(2.0, ge=0.0, description="Extra time a slow job takes.")
    permanent_texts: list[str] = Field(
        default_factory=list, description="Jobs whose text contains one of these always fail."
    )
    seed: int = Field(0, description="Seed of the draws: the same seed faults the same jobs.")


class FaultDrill:
    """Draws faults for one endpoint by its profile, and counts what it injected."""

    def __init__(self, profile: FaultProfile) -> None:
        self.profile = profile
        self.http = [k for k in profile.kinds if k in HTTP_FAULTS]
        self.job = [k for k in profile.kinds if k in JOB_FAULTS]
        self.injected: Counter[str] = Counter()
        self._random = random.Random(profile.seed)
        self._submissions: Counter[str] = Counter()
        self.scheduled: list[tuple[str, float]] = []  # (kind, retry_after) for next requests
        self._lock = threading.Lock()

    def schedule(self, status: int, times: int = 1, retry_after: float | None = None) -> None:
        """Answer the next `times` requests with HTTP `status` (429 with `retry_after`)."""
        kind = "throttle" if status == 429 else f"http_{status}"
        wait = self.profile.retry_after if retry_after is None else retry_after
        with self._lock:
            self.scheduled.extend([(kind, wait)] * times)

    def http_fault(self) -> tuple[str, float] | None:
        """The fault for the next request, if any: its kind and a 429's Retry-After."""
        with self._lock:
            if self.scheduled:
                return self.scheduled.pop(0)
            if not self.http or self._random.random() >= self.profile.rate:
                return None
            kind = self._random.choice(self.http)
            self.injected[kind] += 1
            return kind, self.profile.retry_after

    def job_fault(self, job_input: Any) -> str | None:
        """The fault for a job a worker has taken, if any ("permanent" for marked texts)."""
        text = str(job_input.get("text", "")) if isinstance(job_input, dict) else ""
        with self._lock:
            if any(marker in text for marker in self.profile.permanent_texts):
                self.injected["permanent"] += 1
                return "permanent"
            self._submissions[text] += 1
            if not self.job:
                return None
            key = f"{self.profile.seed}\0{text}\0{self._submissions[text]}".encode()
            draw = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64
            if draw >= self.profile.rate:
                return None
            kind = self.job[int(draw / self.profile.rate * len(self.job)) % len(self.job)]
            self.injected[kind] += 1
            return kind


def corrupt(output: dict[str, Any]) -> dict[str, Any]:
    """The handler's output with its audio replaced by bytes that are not a WAV."""
    return {**output, "audio_base64": "UklGRgAAAABXQVZF" + "A" * 64}
