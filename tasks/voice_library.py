"""The voice library: reference clips kept under a name, in a folder or an S3 prefix.

    library = VoiceLibrary(settings.voice_library, settings.s3_endpoint_url)
    library.add("mara", clip_bytes, source="mara-take3.wav")   # checked, cleaned, stored
    library.entries(); library.get("mara"); library.remove("mara")

Each voice is two files: `NAME.wav` (mono, 24 kHz, silence trimmed, loudness at -20 LUFS)
and `NAME.json` (its content hash, duration, loudness and where it came from). A clip is
refused, with the reason, when it does not decode, lasts under 3 s or over 60 s, is silent
or is clipped (the worker's own checks, gpu_worker/voices.py); 5-20 s is recommended.

A flow takes a library voice by name: the request carries the clip's location (an s3://
URI the worker reads with its own credentials, or a local path the local backend reads),
and the worker caches the checked clip by its content hash.
"""

import hashlib
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ValidationError

from gpu_worker import qc
from gpu_worker.errors import InputError
from gpu_worker.schema import explain
from gpu_worker.voices import MIN_SECONDS, check_clip
from gpu_worker.wav import encode_wav
from tasks import storage
from tasks.audio import OUTPUT_RATE
from tasks.loudness import integrated_loudness, limit, true_peak_db

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")  # the whole name: NAME.fullmatch
TARGET_LUFS = -20.0  # reference clips: a level every engine reads cleanly
PEAK_CEILING_DB = -1.0
RECOMMENDED_SECONDS = (5.0, 20.0)
KEEP_S = 0.1  # silence kept at each end after trimming


class Voice(BaseModel):
    """A library voice, as `NAME.json` describes it."""

    name: str
    sha256: str  # of NAME.wav: the voice's fingerprint
    seconds: float
    lufs: float
    peak_db: float
    sample_rate: int
    source: str  # the file it was made from
    trimmed_seconds: float  # silence cut from its ends
    added: str
    notes: list[str] = []


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise InputError(
            f"voice name {name!r}: use 1-40 letters, digits, '-' or '_', starting with a "
            "letter or digit (it names a file, so no paths)"
        )
    return name


def clean_clip(data: bytes, source: str) -> tuple[np.ndarray, float, list[str]]:
    """Check a clip and make it a library voice: mono at 24 kHz, edge silence trimmed,
    loudness normalised, peaks limited. Returns (samples, seconds trimmed, notes)."""
    samples = check_clip(data, source, OUTPUT_RATE)
    sounding = np.flatnonzero(qc.sounding_frames(samples, OUTPUT_RATE))
    frame = int(OUTPUT_RATE * qc.FRAME_S)
    keep = int(KEEP_S * OUTPUT_RATE)
    start = max(0, sounding[0] * frame - keep)
    end = min(samples.size, (sounding[-1] + 1) * frame + keep)
    trimmed = samples[start:end]
    seconds = trimmed.size / OUTPUT_RATE
    if seconds < MIN_SECONDS:
        raise InputError(
            f"{source} has {seconds:.1f} s of sound once its silence is trimmed; a voice "
            f"clip needs at least {MIN_SECONDS:.0f} s of speech"
        )
    gain = 10 ** ((TARGET_LUFS - integrated_loudness(trimmed, OUTPUT_RATE)) / 20)
    cleaned = limit((trimmed * gain).astype(np.float32), OUTPUT_RATE, PEAK_CEILING_DB)
    low, high = RECOMMENDED_SECONDS
    notes = []
    if not low <= seconds <= high:
        notes.append(f"{seconds:.1f} s long; {low:.0f}-{high:.0f} s clones best")
    return cleaned, round((samples.size - trimmed.size) / OUTPUT_RATE, 3), notes


class VoiceLibrary:
    def __init__(self, location: str, endpoint_url: str | None = None) -> None:
        self.location = location if storage.is_s3(location) else str(_expand(location))
        self.endpoint_url = endpoint_url

    def clip(self, name: str) -> str:
        """Where NAME's clip is: what a request's audio_prompt_url carries."""
        return storage.join(self.location, f"{check_name(name)}.wav")

    def add(self, name: str, data: bytes, source: str, replace: bool = False) -> Voice:
        check_name(name)
        if not replace and self._find(name):
            raise InputError(f"voice {name!r} is already in the library; remove it first")
        samples, trimmed, notes = clean_clip(data, source)
        wav = encode_wav(samples, OUTPUT_RATE)
        voice = Voice(
            name=name,
            sha256=hashlib.sha256(wav).hexdigest(),
            seconds=round(samples.size / OUTPUT_RATE, 3),
            lufs=round(integrated_loudness(samples, OUTPUT_RATE), 2),
            peak_db=round(true_peak_db(samples, OUTPUT_RATE), 2),
            sample_rate=OUTPUT_RATE,
            source=source.split("?")[0],
            trimmed_seconds=trimmed,
            added=datetime.now(UTC).isoformat(timespec="seconds"),
            notes=notes,
        )
        storage.write_bytes(self.clip(name), wav, self.endpoint_url)
        # the description last: a voice is listed only once its clip is in place
        storage.write_bytes(
            self._meta(name), voice.model_dump_json(indent=2).encode(), self.endpoint_url
        )
        return voice

    def entries(self) -> list[Voice]:
        if not storage.is_s3(self.location) and not _expand(self.location).is_dir():
            return []
        found = storage.list_sources(self.location, "*.json", self.endpoint_url)
        return [_described(f, storage.read_bytes(f, self.endpoint_url)) for f in found]

    def get(self, name: str) -> Voice:
        voice = self._find(check_name(name))
        if voice is None:
            known = ", ".join(v.name for v in self.entries()) or "none yet"
            raise InputError(
                f"no voice {name!r} in the library {self.location} (it has: {known}); "
                "add one with `narrator voices add NAME FILE`"
            )
        return voice

    def has(self, name: str) -> bool:
        """Whether the library holds a voice called `name`."""
        return self._find(name) is not None

    def remove(self, name: str) -> None:
        self.get(name)
        storage.delete(self._meta(name), self.endpoint_url)  # unlisted first, then the clip
        storage.delete(self.clip(name), self.endpoint_url)

    def _meta(self, name: str) -> str:
        return storage.join(self.location, f"{name}.json")

    def _find(self, name: str) -> Voice | None:
        meta = self._meta(name)
        data = storage.read_bytes_if_exists(meta, self.endpoint_url)
        return None if data is None else _described(meta, data)


def _described(location: str, data: bytes) -> Voice:
    """A voice's description file, or one line naming the file when it is not one."""
    try:
        return Voice.model_validate_json(data)
    except ValidationError as e:
        raise InputError(
            f"{location} is not a voice description ({explain(e)}); remove it, or add the "
            "voice again with `narrator voices add --replace`"
        ) from e


def _expand(location: str) -> Path:
    return Path(location).expanduser().absolute()
