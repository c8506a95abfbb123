"""The embedded default engine: every voice the offline CPU engines have, under one name.

hibari speaks "heart" (its default) and piper speaks "joe"; a request goes to the engine
that owns its voice. Both are PyPI packages with their models inside, so a dialogue with
two audibly different speakers works on a laptop with no GPU and no network.
"""

import numpy as np

from gpu_worker.engines.hibari import HibariEngine
from gpu_worker.engines.piper import PiperEngine
from gpu_worker.errors import InputError
from gpu_worker.schema import GenerateRequest
from gpu_worker.settings import WorkerSettings


class EmbeddedEngine:
    name = "embedded"
    sample_rate = 24000
    clones = False
    batches = False

    def __init__(self, settings: WorkerSettings) -> None:
        self.hibari = HibariEngine(threads=settings.cpu_threads)
        self.piper = PiperEngine(settings.piper_voices_dir, threads=settings.cpu_threads)

    def voices(self) -> list[str]:
        return [*self.hibari.voices(), *self.piper.voices()]

    def identity(self, voice: str | None) -> str:
        return self._owner(voice).identity(voice)

    def synthesize(self, request: GenerateRequest, seed: int) -> np.ndarray:
        return self._owner(request.voice).synthesize(request, seed)

    def synthesize_batch(self, request: GenerateRequest, seeds: list[int]) -> list[np.ndarray]:
        return [self.synthesize(request, seed) for seed in seeds]

    def _owner(self, voice: str | None) -> HibariEngine | PiperEngine:
        if voice is None or voice in self.hibari.voices():
            return self.hibari
        if voice in self.piper.voices():
            return self.piper
        raise InputError(
            f"voice {voice!r} is not available to the embedded engine; available offline: "
            f"{', '.join(self.voices())}. A cloned voice needs NARRATOR_ENGINE=chatterbox "
            "(or --backend runpod) and a clip: see `narrator voices add`."
        )
