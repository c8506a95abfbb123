"""Speech engines behind one protocol, and the factory that loads the configured one."""

from typing import Protocol

import numpy as np

from gpu_worker.schema import GenerateRequest
from gpu_worker.settings import WorkerSettings


class Engine(Protocol):
    """Text in, float32 mono audio out. Loaded once per worker, called once per candidate."""

    name: str
    sample_rate: int
    clones: bool  # speaks in the voice of a reference clip (audio_prompt_url)
    # synthesize_batch makes its seeds together (one GPU batch), so a round is made whole;
    # False: one seed after another, and a round may stop early (accept_score)
    batches: bool

    def voices(self) -> list[str]:
        """Voices this engine can speak with right now (no download needed)."""
        ...

    def identity(self, voice: str | None) -> str:
        """Everything about the engine and voice that changes its audio (names, versions,
        model hashes). Part of the cache key: a new model or voice regenerates the chunk."""
        ...

    def synthesize(self, request: GenerateRequest, seed: int) -> np.ndarray:
        """One candidate for `request.text`; the same seed gives the same audio."""
        ...

    def synthesize_batch(self, request: GenerateRequest, seeds: list[int]) -> list[np.ndarray]:
        """One candidate per seed, made together where the engine can (a GPU batch)."""
        ...


def load_engine(settings: WorkerSettings) -> Engine:
    if settings.engine == "chatterbox":
        from gpu_worker.engines.chatterbox import ChatterboxEngine

        return ChatterboxEngine.load(settings)
    if settings.engine == "hibari":
        from gpu_worker.engines.hibari import HibariEngine

        return HibariEngine(threads=settings.cpu_threads)
    from gpu_worker.engines.embedded import EmbeddedEngine

    return EmbeddedEngine(settings)
