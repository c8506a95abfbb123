"""The embedded CPU engine: hibari-tts, a small English neural TTS (24 kHz) whose default
voice ships inside its wheel. Candidates differ by seed (hibari seeds its noise component).
"""

import threading
from importlib.metadata import version

import numpy as np

from gpu_worker.errors import InputError
from gpu_worker.schema import GenerateRequest


class HibariEngine:
    name = "hibari"
    sample_rate = 24000
    clones = False
    batches = False

    def __init__(self, threads: int = 1) -> None:
        from hibari.voices import DEFAULT

        self.default_voice: str = DEFAULT
        self._threads = threads
        self._models: dict[str, object] = {}
        self._lock = threading.Lock()

    def voices(self) -> list[str]:
        from hibari.voices import VOICES, voice_path

        available = []
        for name in VOICES:
            try:
                voice_path(name, download_missing=False)
            except FileNotFoundError:
                continue
            available.append(name)
        return available

    def identity(self, voice: str | None) -> str:
        from hibari.voices import VOICES

        name = self._check_voice(voice)
        return f"hibari-tts=={version('hibari-tts')} voice={name} sha256={VOICES[name]['sha256']}"

    def synthesize(self, request: GenerateRequest, seed: int) -> np.ndarray:
        if request.audio_prompt_url:
            raise InputError(
                "the hibari engine has built-in voices only and cannot clone "
                f"{request.audio_prompt_url!r}; use the chatterbox engine"
            )
        model = self._model(self._check_voice(request.voice))
        audio = model(request.text, seed=seed)  # type: ignore[operator]
        return np.asarray(audio, dtype=np.float32)

    def synthesize_batch(self, request: GenerateRequest, seeds: list[int]) -> list[np.ndarray]:
        return [self.synthesize(request, seed) for seed in seeds]

    def _check_voice(self, voice: str | None) -> str:
        name = voice or self.default_voice
        available = self.voices()
        if name not in available:
            raise InputError(
                f"voice {name!r} is not available to the hibari engine; available offline: "
                f"{', '.join(available)}. Other hibari voices download once into HIBARI_HOME "
                f"when the machine is online (`hibari --voice NAME`)."
            )
        return name

    def _model(self, voice: str) -> object:
        with self._lock:
            if voice not in self._models:
                from hibari import Hibari

                self._models[voice] = Hibari(voice=voice, threads=self._threads)
            return self._models[voice]
