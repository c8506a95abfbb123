"""Where a chunk's audio is made: the Backend protocol and the backends a process opens.

Every backend speaks the worker's wire contract (GenerateRequest in, GenerateResult out),
so the flow cannot tell them apart.

    LocalBackend       the worker code in this process (embedded CPU engine by default): local.py
    RunPodBackend      a RunPod serverless endpoint, over its REST API: runpod/
    ElevenLabsBackend  ElevenLabs' text-to-speech API as the engine, heard here: elevenlabs.py

A failure inside the worker reaches the flow as the same exception from either backend: both
pass it through gpu_worker.errors' wire form (to_wire, from_wire).
"""

import threading
from typing import Protocol

from gpu_worker.schema import GenerateRequest, GenerateResult
from gpu_worker.settings import WorkerSettings
from tasks.backends.local import LocalBackend
from tasks.backends.runpod import RunPodBackend, api_key
from tasks.settings import NarratorSettings


class Backend(Protocol):
    name: str
    billed_per_take: bool  # every candidate costs money: 1 candidate unless asked for more
    uses_neighbours: bool  # requests carry the neighbouring chunks' text (previous/next_text)

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

    def stop(self, within: float = 2.0) -> int:
        """Take no more work and cancel what is in flight remotely, within `within` seconds;
        returns how many remote jobs were in flight."""
        ...


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
            if settings.backend == "local":
                _OPEN[key] = LocalBackend(worker, settings.local_workers)
            elif settings.backend == "elevenlabs":
                from tasks.backends.elevenlabs import open_elevenlabs

                _OPEN[key] = open_elevenlabs(settings, worker)
            else:
                _OPEN[key] = RunPodBackend(settings, api_key(settings), worker)
        return _OPEN[key]


def cancel_remote_jobs(within: float = 2.0) -> int:
    """Cancel the in-flight jobs of every RunPod backend this process opened, within
    `within` seconds; returns how many."""
    with _OPEN_LOCK:
        remote = [b for b in _OPEN.values() if isinstance(b, RunPodBackend)]
    return sum(backend.cancel_all(within) for backend in remote)


def stop_backends(within: float = 2.0) -> int:
    """Stop every backend this process opened (a run cancelled, crashed or told to stop):
    no more work, remote jobs in flight cancelled within `within` seconds. Returns how
    many remote jobs were cancelled."""
    with _OPEN_LOCK:
        opened = list(_OPEN.values())
    return sum(backend.stop(within) for backend in opened)
