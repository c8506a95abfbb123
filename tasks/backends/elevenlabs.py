"""The ElevenLabs backend: ElevenLabs' text-to-speech REST API as the engine, behind the same
best-of-N, Whisper validation (this machine's validator, the same gates and scoring), cache
and per-chunk retries as the other backends. Seed 002's digest pipeline, in parallel.

    POST {base}/v1/text-to-speech/{voice_id}?output_format=pcm_24000
         xi-api-key: KEY     {"text", "model_id", "voice_settings", "seed"}
    -> 24 kHz 16-bit mono PCM; headers current-concurrent-requests, maximum-concurrent-requests

httpx rather than the official `elevenlabs` SDK: the backend needs one endpoint, the response
headers that say the plan's concurrency, and its own answer to each 429 (the SDK retries by
itself, which would fight the window below). PCM 24 kHz needs no decoding and is the rate
every engine here speaks; for a plan without it, NARRATOR_ELEVENLABS_OUTPUT_FORMAT=
mp3_44100_128 asks for MP3, decoded and resampled with PyAV (the format is part of the
cache key: the two never share entries). A refused format says which setting to change.

Concurrency follows the account (`PlanWindow`): the plan's maximum, read from every answer,
is the ceiling; a 429 `too_many_concurrent_requests` shrinks the window to what is in flight
and waits for one of this process's requests to finish (no backoff storm); a 429
`system_busy`, a 5xx or a lost connection halves the window and backs off with jitter, down
to one request at a time, and every success adds back a fraction (AIMD). Every process
using the account also holds a slot of one Prefect global concurrency limit per request
(`elevenlabs_limit`, sized to the plan), so two machines' runs together keep to the plan
instead of each filling it. 401, 422 and an exhausted quota are permanent, with the reason.
The API key is registered with the redactor when read and goes only into the `xi-api-key`
header.

Continuity: each request carries the same voice's previous and next chunk text, and, when
this process has already made the previous chunk (chunks run about in reading order; at a
plan of one request, always), that take's request id as `previous_request_ids`. Neither is
in the cache key: they smooth a join, and an edit must re-ask one chunk, not three.
"""

import contextlib
import heapq
import itertools
import logging
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import numpy as np

from gpu_worker.best_of_n import BestOfN
from gpu_worker.errors import InputError, PermanentError, TransientError
from gpu_worker.schema import GenerateRequest
from gpu_worker.settings import WorkerSettings
from gpu_worker.validator import Validator
from tasks.backends.local import LocalBackend
from tasks.backends.order import reading_order
from tasks.backends.runpod.api_key import secret_key
from tasks.settings import NarratorSettings

log = logging.getLogger("narrator.elevenlabs")

SAMPLE_RATE = 24000
BUSY_ATTEMPTS = 6  # system_busy / 5xx / connection: then the chunk's own retries take over
BUSY_DELAYS = (1.0, 2.0, 4.0, 8.0, 16.0)
WAIT_FOR_A_SLOT_S = 600.0  # too_many_concurrent_requests: how long to wait for a free slot
ACCOUNT_POLL_S = 0.2  # a full account limit is asked again this often
REQUEST_ID_TTL_S = 3600.0  # a take's request id is sent as the next one's context this long
FREE_SLOT_POLL_S = 1.0  # when another client holds the account's slots, not this process


class PlanWindow:
    """Requests in flight to the API from this process, following the plan and its answers.

    `ceiling` is the plan's maximum (the setting until an answer's header tells it). A full
    account (`full`) sets the window to the requests that did get through; trouble (`busy`)
    halves it, at most once a second; each success adds 1/window. Never below one request at
    a time. `peak` is the most seen in flight; `history` the window's (seconds, size) changes.
    """

    def __init__(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self.window = float(ceiling)
        self.in_flight = 0
        self.peak = 0
        self.history: list[tuple[float, int]] = [(0.0, ceiling)]
        self._started = time.monotonic()
        self._last_cut = -1.0
        self._changed = threading.Condition()
        self._waiting: list[tuple[int, int]] = []  # (reading order, arrival) of waiters
        self._arrivals = itertools.count()

    @contextmanager
    def slot(self, timeout: float | None = None) -> Iterator[None]:
        """A request's place in the window; waiting requests go in reading order
        (tasks/backends/order.py), so chunks are said about in order."""
        me = (reading_order.get(), next(self._arrivals))
        with self._changed:
            heapq.heappush(self._waiting, me)
            try:
                admitted = self._changed.wait_for(
                    lambda: self.in_flight < int(self.window) and self._waiting[0] == me,
                    timeout,
                )
            finally:
                self._waiting.remove(me)
                heapq.heapify(self._waiting)
                self._changed.notify_all()  # the next in line may go now
            if not admitted:
                raise TransientError("ElevenLabs: no free request slot in time", code="throttled")
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            yield
        finally:
            with self._changed:
                self.in_flight -= 1
                self._changed.notify_all()

    @property
    def waiting(self) -> int:
        """Requests waiting for a place in the window."""
        return len(self._waiting)

    def plan(self, maximum: int) -> None:
        """The plan's concurrency, from `maximum-concurrent-requests`."""
        with self._changed:
            if maximum >= 1 and maximum != self.ceiling:
                self.ceiling = maximum
                self._set(min(self.window, float(maximum)))  # a larger plan: grow into it

    def full(self) -> None:
        """429 too_many_concurrent_requests: the account has fewer slots than this process
        has requests out (a lowered plan, another client): keep what got through."""
        with self._changed:
            self._set(max(1.0, min(self.window, self.in_flight - 1)))

    def busy(self) -> None:
        """429 system_busy, a 5xx, a lost connection: halve, once per second of trouble."""
        with self._changed:
            now = time.monotonic() - self._started
            if now - self._last_cut >= 1.0:
                self._last_cut = now
                self._set(max(1.0, self.window / 2))

    def succeeded(self) -> None:
        with self._changed:
            self._set(min(float(self.ceiling), self.window + 1 / self.window))
            self._changed.notify_all()

    def _set(self, window: float) -> None:
        before = int(self.window)
        self.window = window
        if int(window) != before:
            self.history.append((round(time.monotonic() - self._started, 3), int(window)))
            log.info("ElevenLabs requests in flight: %d -> %d", before, int(window))


class ElevenLabsEngine:
    """The Engine protocol over the API: one request per candidate, each with its seed."""

    name = "elevenlabs"
    sample_rate = SAMPLE_RATE
    clones = False  # voices are ElevenLabs voice ids (--voice, the cast); no reference clips
    batches = False

    def __init__(self, settings: NarratorSettings, key: str, window: PlanWindow) -> None:
        self.settings = settings
        self.window = window
        self.limit = settings.elevenlabs_limit  # the account's Prefect limit ("": none)
        self._sized: int | None = None  # the size the limit was last given
        self._client_prefect: Any = None
        self._leases: list[str] = []  # leases no request holds now
        self.model = settings.elevenlabs_model
        self.output_format = settings.elevenlabs_output_format
        self.voice_settings = {
            "stability": settings.elevenlabs_stability,
            "similarity_boost": settings.elevenlabs_similarity_boost,
            "style": settings.elevenlabs_style,
            "use_speaker_boost": settings.elevenlabs_speaker_boost,
        }
        self.characters = 0  # billed: the text of every take made
        self.requests = 0
        self._count = threading.Lock()
        self._known: set[str] = set()  # voice ids the account was asked about and has
        # (voice, text) -> the request id of its latest take, and when: the next chunk of
        # that voice sends it as previous_request_ids
        self._takes: dict[tuple[str, str], tuple[str, float]] = {}
        self._client = httpx.Client(
            base_url=settings.elevenlabs_base_url,
            headers={"xi-api-key": key},
            timeout=httpx.Timeout(settings.elevenlabs_timeout, connect=10.0),
        )

    def voices(self) -> list[str]:
        return []  # any voice id of the account: the API says which it does not know

    def identity(self, voice: str | None) -> str:
        """What the audio depends on; asked once per voice before any chunk (plan_jobs),
        so an unknown voice id fails the run before a character is billed."""
        if voice:
            self.check_voice(voice)
        settings = ",".join(f"{k}={v}" for k, v in self.voice_settings.items())
        return f"elevenlabs model={self.model} voice={voice} {settings} format={self.output_format}"

    def check_voice(self, voice: str) -> None:
        """GET /v1/voices/{voice_id} (free): a 404 is the run's one-line error; a key the
        API refuses too. Anything else (busy, unreachable) is left to the requests."""
        if voice in self._known:
            return
        try:
            response = self._client.get(f"/v1/voices/{voice}")
        except httpx.TransportError:
            return
        if response.status_code == 200:
            self._known.add(voice)
            return
        status, message = _detail(response)
        if response.status_code == 404:
            raise InputError(
                f"ElevenLabs has no voice {voice!r} for this API key ({message}): check "
                "--voice or the cast's voice ids"
            )
        if response.status_code == 401 and status != "quota_exceeded":
            self._trouble(response, voice)  # raises: the key is refused

    def synthesize(self, request: GenerateRequest, seed: int) -> np.ndarray:
        if not request.voice:
            raise InputError("the elevenlabs backend needs a voice id: --voice VOICE_ID")
        body: dict[str, Any] = {
            "text": request.text,
            "model_id": self.model,
            # the role's settings (the cast) over the run's
            "voice_settings": {
                **self.voice_settings,
                **(request.voice_settings or {}),
                "speed": 1.0,  # narrator's own stretch sets the pace
            },
            "seed": seed % 4_294_967_296,
        }
        for neighbour in ("previous_text", "next_text"):  # prosody that flows across joins
            if getattr(request, neighbour):
                body[neighbour] = getattr(request, neighbour)
        audio = self._speak(request.voice, body)
        if self.output_format.startswith("mp3"):
            return decoded_mp3(audio)
        return np.frombuffer(audio, dtype="<i2").astype(np.float32) / 32768.0

    def synthesize_batch(self, request: GenerateRequest, seeds: list[int]) -> list[np.ndarray]:
        return [self.synthesize(request, seed) for seed in seeds]

    def _speak(self, voice: str, body: dict[str, Any]) -> bytes:
        """One take, through the window: waits out a full account, backs off when busy."""
        deadline = time.monotonic() + WAIT_FOR_A_SLOT_S
        busy = 0
        while True:
            with (
                self.window.slot(timeout=max(0.0, deadline - time.monotonic())),
                self.account_slot(max(1.0, deadline - time.monotonic())),
            ):
                with self._count:
                    self.requests += 1
                self._add_previous_take(voice, body)
                try:
                    response = self._client.post(
                        f"/v1/text-to-speech/{voice}",
                        params={"output_format": self.output_format},
                        json=body,
                    )
                except httpx.TransportError as e:
                    trouble: str | None = f"connection: {type(e).__name__}"
                else:
                    trouble = self._trouble(response, voice)
                    if trouble is None:
                        self._read_plan(response)
                        self.window.succeeded()
                        with self._count:  # billed: every take made, failed ones too
                            self.characters += len(body["text"])
                        if response.headers.get("request-id"):
                            self._takes[(voice, body["text"])] = (
                                response.headers["request-id"],
                                time.monotonic(),
                            )
                        return response.content
                    if trouble == "full":
                        self._read_plan(response)
                        self.window.full()
            if trouble == "full":  # wait for one of ours to finish (the slot above), retry
                if self.window.in_flight == 0:  # another client holds the account's slots
                    time.sleep(FREE_SLOT_POLL_S)
                if time.monotonic() > deadline:
                    raise TransientError("ElevenLabs: the account stayed full", code="throttled")
                continue
            self.window.busy()
            if busy >= BUSY_ATTEMPTS - 1:
                raise TransientError(f"ElevenLabs: {trouble}", code="transient")
            delay = BUSY_DELAYS[min(busy, len(BUSY_DELAYS) - 1)]
            time.sleep(delay * random.uniform(0.5, 1.5))  # jitter: retries do not arrive together
            busy += 1

    def _add_previous_take(self, voice: str, body: dict[str, Any]) -> None:
        """`previous_request_ids`: the request id of the chunk before, when this process has
        said it already (and recently: ids are context for a while only)."""
        before = self._takes.get((voice, body.get("previous_text") or ""))
        if before and time.monotonic() - before[1] < REQUEST_ID_TTL_S:
            body["previous_request_ids"] = [before[0]]

    def _read_plan(self, response: httpx.Response) -> None:
        maximum = response.headers.get("maximum-concurrent-requests")
        if maximum and maximum.isdigit():
            self.window.plan(int(maximum))
            self.size_account_limit(int(maximum))

    def size_account_limit(self, size: int) -> None:
        """Create or resize the account's Prefect global limit (every process that uses
        the account shares it): at flow start, and when an answer tells another plan."""
        if not self.limit or size == self._sized:
            return
        self._prefect().upsert_global_concurrency_limit_by_name(self.limit, size)
        self._sized = size

    @contextmanager
    def account_slot(self, timeout: float) -> Iterator[None]:
        """A lease on one slot of the account's Prefect global limit for one request,
        shared by every process (a second machine's requests count against the same
        plan). A request that ends hands its lease to the next one waiting in this
        process, and gives it back when none is (`_leases`); a new one is asked of the
        server directly, again every `ACCOUNT_POLL_S` while the limit is full
        (prefect.concurrency would wait the server's Retry-After, seconds at a time). A
        lease outlives a request's timeout, so a killed process frees its slots."""
        if not self.limit:
            yield
            return
        with self._count:
            lease = self._leases.pop() if self._leases else None
        lease = lease or self._lease(timeout)
        try:
            yield
        finally:
            if self.window.waiting:
                with self._count:
                    self._leases.append(lease)  # the next request here takes it
            else:
                self._release(lease)
                self.release_idle()  # no one here needs them: other processes may

    def reserve(self, leases: int) -> None:
        """Hold up to `leases` free slots before the run's tasks start (the Prefect
        server is busiest when they do); requests use them as they come."""
        client = self._prefect()
        for _ in range(leases - len(self._leases)):
            try:
                answer = client.increment_concurrency_slots_with_lease(
                    [self.limit], 1, "concurrency", self.settings.elevenlabs_timeout + 60
                )
            except httpx.HTTPError:
                return  # full, or busy: requests ask for their own
            with self._count:
                self._leases.append(answer.json()["lease_id"])

    def release_idle(self) -> None:
        with self._count:
            idle, self._leases = self._leases, []
        for lease in idle:
            self._release(lease)

    def _lease(self, timeout: float) -> str:
        client = self._prefect()
        deadline = time.monotonic() + timeout
        while True:
            try:
                answer = client.increment_concurrency_slots_with_lease(
                    [self.limit], 1, "concurrency", self.settings.elevenlabs_timeout + 60
                )
                return str(answer.json()["lease_id"])
            except httpx.HTTPStatusError as e:
                if e.response.status_code != 423 and e.response.status_code < 500:
                    raise  # 423: every slot is taken; 5xx: a busy server
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TransientError("ElevenLabs: the account limit stayed full", code="throttled")
            time.sleep(ACCOUNT_POLL_S)

    def _release(self, lease: str) -> None:
        with contextlib.suppress(httpx.HTTPError):  # else the lease expires by itself
            self._prefect().release_concurrency_slots_with_lease(lease)

    def _prefect(self) -> Any:
        """One Prefect API client for this engine's leases (opened on first use)."""
        with self._count:
            if self._client_prefect is None:
                from prefect.client.orchestration import get_client

                self._client_prefect = get_client(sync_client=True)
                self._client_prefect.__enter__()
            return self._client_prefect

    @staticmethod
    def _trouble(response: httpx.Response, voice: str) -> str | None:
        """None for audio; "full" for a full account; a reason to back off and retry; or
        raises for what no retry mends."""
        if response.status_code == 200:
            return None
        status, message = _detail(response)
        if response.status_code == 429:
            return "full" if status == "too_many_concurrent_requests" else f"429 {status or 'busy'}"
        if response.status_code >= 500:
            return f"HTTP {response.status_code}"
        if status == "quota_exceeded":
            raise PermanentError(
                f"ElevenLabs: out of credits ({message}); top up the account or wait for the "
                "quota to reset",
                code="quota_exceeded",
            )
        if "output_format" in status or "output_format" in message:
            raise InputError(
                f"ElevenLabs refused the output format ({message}): a plan without PCM "
                "needs NARRATOR_ELEVENLABS_OUTPUT_FORMAT=mp3_44100_128"
            )
        if response.status_code == 401:
            raise PermanentError(
                "ElevenLabs refused the API key (HTTP 401): check NARRATOR_ELEVENLABS_API_KEY "
                "or the Prefect Secret block",
                code="unauthorized",
            )
        if response.status_code in (400, 404, 422):
            raise InputError(f"ElevenLabs refused voice {voice!r} or a setting: {message}")
        raise PermanentError(f"ElevenLabs: HTTP {response.status_code}: {message}")


def decoded_mp3(data: bytes) -> np.ndarray:
    """An MP3 answer as float samples at SAMPLE_RATE, mono (PyAV: FFmpeg's decoder and
    resampler; the encoder's priming samples dropped as players drop them)."""
    import io

    import av

    try:
        with av.open(io.BytesIO(data), "r") as container:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            frames = [
                out for frame in container.decode(audio=0) for out in resampler.resample(frame)
            ]
            frames += resampler.resample(None)
    except (av.FFmpegError, IndexError) as e:
        raise TransientError(f"ElevenLabs answered audio that does not decode ({e})") from e
    if not frames:
        raise TransientError("ElevenLabs answered an empty MP3")
    return np.concatenate([f.to_ndarray()[0] for f in frames]).astype(np.float32)


def _detail(response: httpx.Response) -> tuple[str, str]:
    """The error body's `detail.status` and message (ElevenLabs' shape; 422s carry a list)."""
    try:
        detail = response.json().get("detail")
    except ValueError:
        return "", response.text[:200]
    if isinstance(detail, dict):
        return str(detail.get("status", "")), str(detail.get("message", ""))
    if isinstance(detail, list) and detail:
        first = detail[0] if isinstance(detail[0], dict) else {}
        where = ".".join(str(part) for part in first.get("loc", []))
        return "", f"{where}: {first.get('msg', detail[0])}"
    return "", str(detail)


class ElevenLabsBackend(LocalBackend):
    """Best-of-N in this process, each candidate an API request; one Whisper model heard
    by as many threads as the plan lets requests run."""

    name = "elevenlabs"
    billed_per_take = True  # by the character, every take
    uses_neighbours = True  # previous_text / next_text carry prosody across joins

    def __init__(self, settings: NarratorSettings, key: str, worker: WorkerSettings) -> None:
        self.window = PlanWindow(settings.elevenlabs_concurrency)
        self.engine = ElevenLabsEngine(settings, key, self.window)
        validator: list[Validator] = []
        made = threading.Lock()

        def load(worker_settings: WorkerSettings) -> BestOfN:
            with made:
                if not validator:
                    validator.append(Validator(worker_settings, workers=2))
            return BestOfN(self.engine, validator[0])

        # more chunk threads than the plan's slots: the window, not the threads, bounds
        # requests in flight, and a larger plan is used as soon as an answer says so
        super().__init__(worker, workers=64, load=load)

    def prepare(self, jobs: int) -> None:
        """The account's Prefect global limit, created or resized before any request, and
        this run's first slots taken while the Prefect server is not yet busy."""
        if self.engine.limit:
            self.engine.size_account_limit(self.window.ceiling)
            self.engine.reserve(min(jobs, self.window.ceiling))

    def voice_fingerprint(self, audio_prompt_url: str) -> str:
        raise InputError(
            f"the elevenlabs backend speaks ElevenLabs voice ids, not clips "
            f"({audio_prompt_url!r}): --voice VOICE_ID, or a cast of voice ids"
        )


def open_elevenlabs(settings: NarratorSettings, worker: WorkerSettings) -> ElevenLabsBackend:
    key = secret_key(
        settings.elevenlabs_api_key,
        settings.elevenlabs_api_key_block,
        "ElevenLabs",
        "NARRATOR_ELEVENLABS_API_KEY",
    )
    return ElevenLabsBackend(settings, key, worker)
