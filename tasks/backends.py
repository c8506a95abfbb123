"""Where a chunk's audio is made. Every backend speaks the worker's wire contract
(GenerateRequest in, GenerateResult out), so the flow cannot tell them apart.

    LocalBackend   the worker code in this process (embedded CPU engine by default)
"""

import queue
import threading
from typing import Protocol

from gpu_worker.generate import Worker
from gpu_worker.schema import GenerateRequest, GenerateResult
from gpu_worker.settings import WorkerSettings
from tasks.settings import NarratorSettings


class Backend(Protocol):
    name: str

    def identity(self, voice: str | None) -> str:
        """Everything about the backend that changes the audio for `voice` (cache key part)."""
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


_LOCAL: dict[tuple[WorkerSettings, int], LocalBackend] = {}
_LOCAL_LOCK = threading.Lock()


def open_backend(settings: NarratorSettings, worker: WorkerSettings) -> Backend:
    """The backend the settings name. Local backends are shared per process, so models load
    once however many chapters a process narrates."""
    with _LOCAL_LOCK:
        key = (worker, settings.local_workers)
        if key not in _LOCAL:
            _LOCAL[key] = LocalBackend(worker, settings.local_workers)
        return _LOCAL[key]
