"""The GPU engine: Chatterbox (Resemble AI), English or multilingual (23 languages), cloning
the voice of a reference clip. Needs the `gpu` extra (chatterbox-tts, torch).

Weights come from `NARRATOR_CHATTERBOX_DIR` (a network volume or a directory baked into the
image) or, when that is unset, from the library's own hub download. A voice is prepared once
per worker (speaker embedding and prompt tokens) and reused for every chunk that names the
same reference audio.

The generation body mirrors chatterbox-tts 0.1.7's `generate()` with two changes: the
English model decodes all candidates of a round together (t3_batch.py), and the number of
speech tokens is capped by the text's length, so a candidate that never emits its stop token
(runaway generation) costs a bounded amount of GPU time instead of 1,000 tokens.
"""

import hashlib
from contextlib import nullcontext
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from gpu_worker.errors import InputError, TransientError
from gpu_worker.schema import GenerateRequest
from gpu_worker.settings import WorkerSettings
from gpu_worker.voices import load_reference

TOKENS_PER_SECOND = 25  # S3 speech tokens per second of audio
MAX_NEW_TOKENS = 1000  # the library's own ceiling (40 s)
SPEECH_VOCAB = 6561  # English model: ids at or above this are not speech


def token_budget(text: str) -> int:
    """Speech tokens allowed for `text`: three times a slow reading (8 characters a second)
    plus two seconds, within the library's ceiling."""
    slow_seconds = len(text) / 8.0
    return min(MAX_NEW_TOKENS, int(3 * slow_seconds * TOKENS_PER_SECOND) + 2 * TOKENS_PER_SECOND)


class ChatterboxEngine:
    name = "chatterbox"
    sample_rate = 24000
    clones = True

    def __init__(self, model: Any, settings: WorkerSettings, weights: str) -> None:
        self.model = model
        self.settings = settings
        self.multilingual = settings.chatterbox_multilingual
        self.batches = not self.multilingual  # the multilingual loop goes seed by seed
        self.weights = weights
        self.stop_on_eos = True  # benchmarks with random weights turn this off
        self._voices: dict[str, Any] = {}  # reference sha256 -> prepared conditionals

    @classmethod
    def load(cls, settings: WorkerSettings) -> "ChatterboxEngine":
        try:
            from chatterbox.mtl_tts import ChatterboxMultilingualTTS
            from chatterbox.tts import ChatterboxTTS
        except ImportError as e:
            raise InputError(
                "NARRATOR_ENGINE=chatterbox needs the gpu extra: pip install 'narrator[gpu]'"
            ) from e
        model_class = (
            ChatterboxMultilingualTTS if settings.chatterbox_multilingual else ChatterboxTTS
        )
        if settings.chatterbox_dir:
            model = model_class.from_local(settings.chatterbox_dir, settings.device)
            weights = _directory_digest(settings.chatterbox_dir)
        else:
            model = model_class.from_pretrained(settings.device)
            weights = "hub:ResembleAI/chatterbox"
        return cls(model, settings, weights)

    def voices(self) -> list[str]:
        return ["default"] if self.model.conds is not None else []

    def identity(self, voice: str | None) -> str:
        kind = "multilingual" if self.multilingual else "english"
        return (
            f"chatterbox-tts=={version('chatterbox-tts')} {kind} weights={self.weights} "
            f"dtype={self.settings.dtype} voice={voice or 'default'}"
        )

    def synthesize(self, request: GenerateRequest, seed: int) -> np.ndarray:
        return self.synthesize_batch(request, [seed])[0]

    def synthesize_batch(self, request: GenerateRequest, seeds: list[int]) -> list[np.ndarray]:
        """One candidate per seed. The English model decodes them together (t3_batch); the
        multilingual one needs the library's own loop (its alignment analyzer), one by one."""
        import torch

        conditionals = self._conditionals(request)
        text, ids = self._text_tokens(request)
        try:
            with torch.inference_mode(), self._autocast():
                if self.multilingual:
                    token_rows = [
                        self._library_tokens(request, conditionals, text, ids, seed)
                        for seed in seeds
                    ]
                else:
                    token_rows = self._batched_tokens(request, conditionals, text, ids, seeds)
                waves = [
                    self._vocode(tokens, conditionals, seed)
                    for tokens, seed in zip(token_rows, seeds, strict=True)
                ]
        except torch.cuda.OutOfMemoryError as e:
            torch.cuda.empty_cache()
            raise TransientError(f"CUDA out of memory: {e}") from e
        return [
            np.asarray(
                self.model.watermarker.apply_watermark(w, sample_rate=self.sample_rate),
                dtype=np.float32,
            )
            for w in waves
        ]

    def _text_tokens(self, request: GenerateRequest) -> tuple[str, Any]:
        """The library's punctuation clean-up, then text ids with start and stop tokens."""
        import torch.nn.functional as F

        if self.multilingual:
            from chatterbox.mtl_tts import SUPPORTED_LANGUAGES, punc_norm

            language = request.language_id.lower()
            if language not in SUPPORTED_LANGUAGES:
                raise InputError(
                    f"language_id {request.language_id!r} is not one the "
                    f"multilingual model speaks: {', '.join(SUPPORTED_LANGUAGES)}"
                )
            text = punc_norm(request.text)
            ids = self.model.tokenizer.text_to_tokens(text, language_id=language)
        else:
            from chatterbox.tts import punc_norm

            if request.language_id.lower() != "en":
                raise InputError(
                    f"language_id {request.language_id!r}: the English model "
                    "speaks only 'en'; set NARRATOR_CHATTERBOX_MULTILINGUAL=true"
                )
            text = punc_norm(request.text)
            ids = self.model.tokenizer.text_to_tokens(text)
        hp = self.model.t3.hp
        ids = F.pad(ids.to(self.settings.device), (1, 0), value=hp.start_text_token)
        return text, F.pad(ids, (0, 1), value=hp.stop_text_token)

    def _batched_tokens(
        self, request: GenerateRequest, conditionals: Any, text: str, ids: Any, seeds: list[int]
    ) -> list[Any]:
        from gpu_worker.engines import t3_batch

        return t3_batch.decode(
            self.model.t3,
            conditionals.t3,
            ids,
            seeds,
            max_new_tokens=token_budget(text),
            temperature=request.temperature,
            cfg_weight=request.cfg_weight,
            repetition_penalty=1.2,
            min_p=0.05,
            top_p=1.0,
            stop_on_eos=self.stop_on_eos,
        )

    def _library_tokens(
        self, request: GenerateRequest, conditionals: Any, text: str, ids: Any, seed: int
    ) -> Any:
        import torch

        torch.manual_seed(seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(seed)
        tokens = self.model.t3.inference(
            t3_cond=conditionals.t3,
            text_tokens=torch.cat([ids, ids], dim=0),
            max_new_tokens=token_budget(text),
            stop_on_eos=self.stop_on_eos,
            temperature=request.temperature,
            cfg_weight=request.cfg_weight,
            repetition_penalty=2.0,
            min_p=0.05,
            top_p=1.0,
        )
        return tokens[0]

    def _vocode(self, tokens: Any, conditionals: Any, seed: int) -> np.ndarray:
        """Speech tokens to 24 kHz audio. S3Gen's flow matching draws noise from the global
        generator: seeding it per candidate keeps a candidate's audio a function of its seed."""
        import torch
        from chatterbox.models.s3tokenizer import drop_invalid_tokens

        torch.manual_seed(seed)

        tokens = drop_invalid_tokens(tokens)
        if not self.multilingual:
            tokens = tokens[tokens < SPEECH_VOCAB]
        wav, _ = self.model.s3gen.inference(
            speech_tokens=tokens.to(self.settings.device), ref_dict=conditionals.gen
        )
        return np.asarray(wav.squeeze(0).float().cpu().numpy())

    def _conditionals(self, request: GenerateRequest) -> Any:
        """The prepared voice for this request (cached per reference clip), with the request's
        exaggeration applied."""
        import torch
        from chatterbox.models.t3.modules.cond_enc import T3Cond

        if request.audio_prompt_url:
            reference = load_reference(request.audio_prompt_url, self.settings, self.sample_rate)
            if reference.sha256 not in self._voices:
                self.model.prepare_conditionals(
                    str(reference.path), exaggeration=request.exaggeration
                )
                self._voices[reference.sha256] = self.model.conds
            conditionals = self._voices[reference.sha256]
        elif self.model.conds is not None:
            conditionals = self.model.conds
        else:
            raise InputError("this Chatterbox model has no built-in voice: give audio_prompt_url")
        current = conditionals.t3
        if float(current.emotion_adv[0, 0, 0]) != request.exaggeration:
            conditionals.t3 = T3Cond(
                speaker_emb=current.speaker_emb,
                cond_prompt_speech_tokens=current.cond_prompt_speech_tokens,
                emotion_adv=request.exaggeration * torch.ones(1, 1, 1),
            ).to(device=self.settings.device)
        return conditionals

    def _autocast(self) -> Any:
        import torch

        if self.settings.dtype == "float32":
            return nullcontext()
        return torch.autocast(
            device_type=self.settings.device.split(":")[0],
            dtype=getattr(torch, self.settings.dtype),
        )


def _directory_digest(directory: Path) -> str:
    """A short hash of the weight files' names and sizes (hashing gigabytes of weights at
    every start would cost seconds of cold start for no safety a new name would not give)."""
    digest = hashlib.sha256()
    for path in sorted(Path(directory).iterdir()):
        if path.is_file():
            digest.update(f"{path.name}:{path.stat().st_size};".encode())
    return digest.hexdigest()[:16]
