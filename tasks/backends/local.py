"""The local backend: the worker's own code (gpu_worker) run in this process."""

import heapq
import itertools
import threading
from collections.abc import Callable

from gpu_worker import voices
from gpu_worker.best_of_n import BestOfN
from gpu_worker.errors import InputError, PermanentError, from_wire, to_wire
from gpu_worker.redaction import redact
from gpu_worker.schema import GenerateRequest, GenerateResult
from gpu_worker.settings import WorkerSettings
from tasks.backends.order import reading_order


class _Slot:
    def __init__(self) -> None:
        self.ready = threading.Event()
        self.worker: BestOfN | None = None


class _Pool:
    """Idle workers, each handed to the waiting call for the lowest chunk index
    (tasks/backends/order.py), not to whichever thread asked first."""

    def __init__(self) -> None:
        self._idle: list[BestOfN] = []
        self._waiting: list[tuple[int, int, _Slot]] = []
        self._arrivals = itertools.count()
        self._lock = threading.Lock()

    def get_nowait(self) -> BestOfN | None:
        with self._lock:
            return self._idle.pop() if self._idle else None

    def get(self, order: int) -> BestOfN:
        with self._lock:
            if self._idle:
                return self._idle.pop()
            slot = _Slot()
            heapq.heappush(self._waiting, (order, next(self._arrivals), slot))
        slot.ready.wait()
        assert slot.worker is not None
        return slot.worker

    def put(self, worker: BestOfN) -> None:
        with self._lock:
            if not self._waiting:
                self._idle.append(worker)
                return
            _, _, slot = heapq.heappop(self._waiting)
        slot.worker = worker
        slot.ready.set()


class LocalBackend:
    """Runs `gpu_worker` in-process: up to `workers` chunks at once, each on its own BestOfN
    (engine + Whisper model), created on first use and kept for the life of the process.
    Calls waiting for a worker are served in reading order."""

    name = "local"
    billed_per_take = False
    uses_neighbours = False

    def __init__(
        self,
        settings: WorkerSettings,
        workers: int,
        load: Callable[[WorkerSettings], BestOfN] = BestOfN.load,
    ) -> None:
        self.settings = settings
        self.workers = workers
        self._load = load
        self._idle = _Pool()
        self._created = 0
        self._lock = threading.Lock()
        self.requests = 0  # generate() calls served: a cached rerun leaves it unchanged
        self.stopping = False

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
                    f"({', '.join(engine.voices())}) and cannot clone "
                    f"{redact(audio_prompt_url)!r}; "
                    "use NARRATOR_ENGINE=chatterbox or --backend runpod"
                )
            return reference.sha256
        finally:
            self._idle.put(worker)

    def prepare(self, jobs: int) -> None:
        """Nothing to do: models load on first use."""

    def stop(self, within: float = 2.0) -> int:
        """Generate no more chunks (those being made finish); nothing is remote."""
        self.stopping = True
        return 0

    def generate(self, request: GenerateRequest) -> GenerateResult:
        """Best-of-N in this process. A failure is passed through its wire form, as the
        RunPod backend receives it, so both classify it alike."""
        if self.stopping:
            raise PermanentError("the run is stopping: no more chunks are generated")
        with self._lock:
            self.requests += 1
        worker = self._acquire()
        try:
            return worker.run(request)
        except Exception as e:
            raise from_wire(to_wire(e)) from e
        finally:
            self._idle.put(worker)

    def _acquire(self) -> BestOfN:
        idle = self._idle.get_nowait()
        if idle is not None:
            return idle
        with self._lock:
            create = self._created < self.workers
            if create:
                self._created += 1
        if create:  # made here, but served in order: a lower chunk may be waiting
            try:
                self._idle.put(self._load(self.settings))
            except BaseException:
                with self._lock:
                    self._created -= 1
                raise
        return self._idle.get(reading_order.get())
