"""Where a chunk's audio is made. Every backend speaks the worker's wire contract
(GenerateRequest in, GenerateResult out), so the flow cannot tell them apart.

    LocalBackend    the worker code in this process (embedded CPU engine by default)
    RunPodBackend   a RunPod serverless endpoint, over its REST API (tasks/runpod.py)
"""

import queue
import threading
from typing import Protocol

from gpu_worker import voices
from gpu_worker.errors import InputError
from gpu_worker.generate import Worker
from gpu_worker.schema import GenerateRequest, GenerateResult
from gpu_worker.settings import WorkerSettings
from tasks.runpod import RunPodBackend, api_key
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

    def prepare(self, jobs: int) -> None:
        """Get ready for `jobs` generate calls, before their tasks start."""
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

    def prepare(self, jobs: int) -> None:
        """Nothing to do: models load on first use."""

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
