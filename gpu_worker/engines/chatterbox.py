"""The GPU engine: Chatterbox (Resemble AI), English or multilingual (23 languages), cloning
the voice of a reference clip. Needs the `gpu` extra (chatterbox-tts, torch).

Weights come from `NARRATOR_CHATTERBOX_DIR` (a network volume or a directory baked into the
image) or, when that is unset, from the library's own hub download. A voice is prepared once
per worker (speaker embedding and prompt tokens) and reused for every chunk that names the
same reference audio.

The generation body mirrors chatterbox-tts 0.1.7's `generate()` with these changes, each
checked against that release (tests/gpu_worker/test_chatterbox_library.py runs them on the CPU):

- The English model decodes all candidates of a round together (t3_batch.py).
- Speech tokens are capped by the text's length (`token_budget`), and in a batch a take that
  runs far past the others is cut (t3_batch's `runaway_after`): one runaway take no longer
  holds its round to 1,000 tokens (40 s).
- The multilingual loop's alignment analyzer leaves three forward hooks and eager attention
  behind on every call (upstream issue #504); `analyzer_cleaned_up` removes them after each.
- `prepare_conditionals` overwrites `model.conds`: the built-in voice is kept apart, so a
  request without a clip never gets the last cloned voice.
- Speech ids at or above 6561 are dropped for both models (the library's multilingual path
  skips this; S3Gen indexes out of range on them: a device-side assert that kills the CUDA
  context).
- The watermark is applied inside `torch.inference_mode()`, as everything else is.
- The multilingual tokenizer's assets (Cangjie table, pkuseg model) are read from the model
  directory; the library would fetch them from the internet at every cold start.
"""

import hashlib
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from gpu_worker.errors import InputError, TransientError
from gpu_worker.schema import GenerateRequest
from gpu_worker.settings import WorkerSettings
from gpu_worker.voices import load_reference
from gpu_worker.weights import PKUSEG_DIR, missing_files

TOKENS_PER_SECOND = 25  # S3 speech tokens per second of audio
MAX_NEW_TOKENS = 1000  # the library's own ceiling (40 s)
SPEECH_VOCAB = 6561  # ids at or above this are start/stop or unused: never speech
PREPARED_VOICES = 32  # cloned voices kept prepared on a warm worker (a few MB each)
SLOW_CHARS_PER_SECOND = 9.0  # a slow narration (a usual one reads 13-16 characters a second)
TYPICAL_CHARS_PER_SECOND = 14.0


def token_budget(text: str) -> int:
    """Speech tokens allowed for `text`: a slow reading of it plus two seconds, within the
    library's ceiling. A take that needs more is slower than any narrator reads (the pace
    gate would fail it) and costs GPU time for nothing."""
    seconds = len(text) / SLOW_CHARS_PER_SECOND + 2.0
    return min(MAX_NEW_TOKENS, int(seconds * TOKENS_PER_SECOND))


def typical_tokens(text: str) -> int:
    """Speech tokens of a usual reading of `text`: the floor of t3_batch's runaway cut, so a
    batch whose first takes stopped early (truncated) never cuts a whole reading short."""
    return int((len(text) / TYPICAL_CHARS_PER_SECOND + 1.0) * TOKENS_PER_SECOND)


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
        # The built-in voice (conds.pt), kept apart: prepare_conditionals overwrites model.conds.
        self._builtin = model.conds
        self._voices: OrderedDict[str, Any] = OrderedDict()  # clip sha256 -> conditionals

    @classmethod
    def load(cls, settings: WorkerSettings) -> "ChatterboxEngine":
        try:
            from chatterbox.mtl_tts import ChatterboxMultilingualTTS
            from chatterbox.tts import ChatterboxTTS
        except ImportError as e:
            raise InputError(
                "NARRATOR_ENGINE=chatterbox needs the gpu extra: pip install 'narrator[gpu]'"
            ) from e
        _check_watermarker()
        multilingual = settings.chatterbox_multilingual
        model_class = ChatterboxMultilingualTTS if multilingual else ChatterboxTTS
        if settings.chatterbox_dir:
            directory = Path(settings.chatterbox_dir)
            if not directory.is_dir():
                raise InputError(
                    f"NARRATOR_CHATTERBOX_DIR {directory} does not exist: attach the network "
                    "volume that holds the models, or bake them into the image "
                    "(deployments/runpod.md, step 2)"
                )
            absent = missing_files(directory, multilingual)
            if absent:
                raise InputError(
                    f"NARRATOR_CHATTERBOX_DIR {directory} lacks {', '.join(absent)}: download "
                    "the models as deployments/runpod.md shows (python -m gpu_worker.weights)"
                )
            with local_tokenizer_assets(directory) if multilingual else nullcontext():
                model = model_class.from_local(directory, settings.device)
            weights = _directory_digest(directory)
        else:
            model = model_class.from_pretrained(settings.device)
            weights = "hub:ResembleAI/chatterbox"
        return cls(model, settings, weights)

    def voices(self) -> list[str]:
        return ["default"] if self._builtin is not None else []

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
            with torch.inference_mode():
                with self._autocast():
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
                # Inside inference_mode too: outside it, the watermarker's network records
                # autograd state for every candidate (host memory grows on a warm worker).
                return [
                    np.asarray(
                        self.model.watermarker.apply_watermark(w, sample_rate=self.sample_rate),
                        dtype=np.float32,
                    )
                    for w in waves
                ]
        except torch.cuda.OutOfMemoryError as e:
            torch.cuda.empty_cache()
            raise TransientError(f"CUDA out of memory: {e}") from e

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
            runaway_floor=typical_tokens(text),
        )

    def _library_tokens(
        self, request: GenerateRequest, conditionals: Any, text: str, ids: Any, seed: int
    ) -> Any:
        import torch

        torch.manual_seed(seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(seed)
        with analyzer_cleaned_up(self.model.t3.tfmr):
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

        # Both models: the library filters only the English one's tokens, and S3Gen's
        # embedding indexes out of range on any id >= 6561 (a device-side assert on CUDA).
        tokens = drop_invalid_tokens(tokens)
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
                self.model.conds = self._builtin  # the default voice stays the default
                while len(self._voices) > PREPARED_VOICES:
                    self._voices.popitem(last=False)
            self._voices.move_to_end(reference.sha256)
            conditionals = self._voices[reference.sha256]
        elif self._builtin is not None:
            conditionals = self._builtin
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


@contextmanager
def analyzer_cleaned_up(tfmr: Any) -> Iterator[None]:
    """Undo what the multilingual loop's alignment analyzer leaves behind (chatterbox-tts
    0.1.7, upstream issue #504): each `T3.inference` call adds forward hooks to three
    attention layers and switches the shared config to eager attention with attention
    outputs, and nothing removes them, so a warm worker slows down call after call (0.49x to
    3.46x real time after ~108 syntheses) and stale hooks feed later calls' stop decisions."""
    config = tfmr.config
    saved = (config._attn_implementation, config.output_attentions)
    try:
        yield
    finally:
        for layer in tfmr.layers:  # the analyzer's hooks only: transformers adds its own once
            hooks = layer.self_attn._forward_hooks
            for key, hook in list(hooks.items()):
                if "AlignmentStreamAnalyzer" in getattr(hook, "__qualname__", ""):
                    del hooks[key]
        config._attn_implementation, config.output_attentions = saved


@contextmanager
def local_tokenizer_assets(directory: Path) -> Iterator[None]:
    """While the multilingual model loads, its tokenizer's two assets come from `directory`:
    the Cangjie table (chatterbox asks the hub for it, even beside the weights, and goes on
    without it offline: Chinese then reads wrong) and pkuseg's segmentation model (which
    pkuseg downloads from GitHub into ~/.pkuseg when missing: a network call at every cold
    start, and a failed load without network)."""
    from chatterbox.models.tokenizers import tokenizer

    def beside_the_weights(repo_id: str, filename: str, **_: Any) -> str:
        return str(directory / filename)

    saved_download = tokenizer.hf_hub_download
    tokenizer.hf_hub_download = beside_the_weights
    try:
        import spacy_pkuseg  # chatterbox skips Chinese word segmentation without it
    except ImportError:
        spacy_pkuseg = None
    saved_home = spacy_pkuseg.config.pkuseg_home if spacy_pkuseg else None
    if spacy_pkuseg:
        spacy_pkuseg.config.pkuseg_home = str(directory / PKUSEG_DIR)
    try:
        yield
    finally:
        tokenizer.hf_hub_download = saved_download
        if spacy_pkuseg:
            spacy_pkuseg.config.pkuseg_home = saved_home


def _check_watermarker() -> None:
    """resemble-perth imports pkg_resources without declaring it; with setuptools 81 or
    later its watermarker is None and the model constructor fails with a NoneType error."""
    import perth

    if perth.PerthImplicitWatermarker is None:
        raise InputError(
            "resemble-perth's watermarker did not import (it needs pkg_resources, which "
            "setuptools 81 removed): pip install 'setuptools<81'"
        )


def _directory_digest(directory: Path) -> str:
    """A short hash of the weight files' names and sizes (hashing gigabytes of weights at
    every start would cost seconds of cold start for no safety a new name would not give)."""
    digest = hashlib.sha256()
    for path in sorted(Path(directory).iterdir()):
        if path.is_file():
            digest.update(f"{path.name}:{path.stat().st_size};".encode())
    return digest.hexdigest()[:16]
