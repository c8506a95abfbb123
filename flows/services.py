"""The composition root: flows and commands build what they work with here, from settings.

    with configured(NarratorSettings(cache_dir="/tmp/cache")):   # a CLI command, a test
        narrate_chapter("ch1.md")                                 # builds services()

Settings are read from the `NARRATOR_*` environment in one place (`current_settings`) unless
a caller configured its own, and child processes get theirs from `child_environment`;
nothing below the entry points reads the environment.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from gpu_worker.redaction import redact_logs, register_secret
from gpu_worker.settings import WorkerSettings
from tasks import storage
from tasks.backends import Backend, open_backend
from tasks.outputs import OutputDir
from tasks.settings import NarratorSettings
from tasks.voice_library import VoiceLibrary

_configured: ContextVar[tuple[NarratorSettings | None, WorkerSettings | None]] = ContextVar(
    "narrator_settings", default=(None, None)
)


@contextmanager
def configured(
    settings: NarratorSettings | None = None, worker: WorkerSettings | None = None
) -> Iterator[None]:
    """Within this block (and the flow runs it starts), use these settings instead of the
    environment's; either may be left to the environment."""
    token = _configured.set((settings, worker))
    try:
        yield
    finally:
        _configured.reset(token)


def current_settings() -> tuple[NarratorSettings, WorkerSettings]:
    """This run's settings: those configured by the caller, else the environment's. The
    in-process worker may read the local voice library's clips."""
    settings, worker = _configured.get()
    settings = settings or NarratorSettings()
    worker = worker or WorkerSettings()
    if worker.library_root is None and not storage.is_s3(settings.voice_library):
        worker = worker.model_copy(update={"library_root": Path(settings.voice_library)})
    return settings, worker


def child_environment(**overrides: str) -> dict[str, str]:
    """The environment a child process (the stack's server and worker) starts with: this
    process's, with `overrides` on top."""
    return {**os.environ, **overrides}


def voice_library(settings: NarratorSettings) -> VoiceLibrary:
    return VoiceLibrary(settings.voice_library, settings.s3_endpoint_url)


@dataclass(frozen=True)
class Services:
    """What a narration works with."""

    settings: NarratorSettings
    worker: WorkerSettings
    backend: Backend
    library: VoiceLibrary

    def cache(self) -> Path | str:
        """The chunk cache, as Prefect result storage (an S3 cache saves a block: a call to
        the Prefect API, so only when a run needs it)."""
        return storage.result_storage(self.settings.cache_dir, self.settings.s3_endpoint_url)

    def output(self, location: str) -> OutputDir:
        """The chapter's output folder, locked for this run (tasks/outputs.py)."""
        return OutputDir(location, self.settings.s3_endpoint_url, self.settings.output_lock_seconds)


def services() -> Services:
    """The backend, voice library and settings of this run, from `current_settings`; log
    lines are redacted from here on (gpu_worker/redaction.py)."""
    redact_logs()
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):  # boto3's, if it has them
        register_secret(os.environ.get(name))
    settings, worker = current_settings()
    return Services(settings, worker, open_backend(settings, worker), voice_library(settings))
