"""What the review page shows of a narrated chapter, read from its published files.

metadata.json gives each chunk's text, what Whisper heard of its take, its score, the gates
it failed and where it is in the chapter; validation.json what the whole-chapter check
heard and flagged; takes.json every take it has had and which is kept. Works the same on a
local folder and an s3:// prefix (audio is then fetched from presigned URLs).
"""

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from gpu_worker.errors import InputError
from tasks.outputs import MANIFEST, published_problem, read_if_exists
from tasks.storage import is_s3, join, s3_client, split_s3
from tasks.takes import TAKES, parse_takes

PEAK_BINS = 120  # columns of a chunk's waveform picture
PRESIGNED_SECONDS = 6 * 3600  # a review session's audio links last this long


@dataclass(frozen=True)
class Published:
    """One published set of the chapter: its metadata.json, its version (the manifest's
    time, which changes at every publish) and the name of its audio file."""

    metadata: dict[str, Any]
    version: str
    audio: str


@dataclass
class Chapter:
    """One published narration, as the page needs it."""

    location: str
    endpoint_url: str | None = None

    def __post_init__(self) -> None:
        self.client: Any = s3_client(self.endpoint_url) if is_s3(self.location) else None

    def read(self, name: str) -> bytes | None:
        return read_if_exists(join(self.location, name), self.client)

    def published(self) -> "Published":
        """The published set as it is now: checked whole, its metadata read once."""
        problem = published_problem(self.location, self.endpoint_url)
        if problem:
            raise InputError(f"{self.location}: not a narrated chapter to review ({problem})")
        raw = self.read(MANIFEST)
        version = str(json.loads(raw)["published_at"]) if raw else ""
        metadata = dict(json.loads(self.read("metadata.json") or b"{}"))
        name = str(metadata["audio"]["file"])
        if Path(name).name != name or name.startswith("."):
            raise InputError(f"{self.location}/metadata.json: {name!r} is not an audio file name")
        return Published(metadata, version, name)

    def take_keys(self) -> set[str]:
        """The cache keys of the takes this chapter lists (the only entries it serves)."""
        return {t.cache_key for e in parse_takes(self.read(TAKES), TAKES).chunks for t in e.takes}

    def audio_url(self, published: "Published") -> str:
        """Where the browser fetches the chapter's audio: this server (local), or S3."""
        if self.client is None:
            return f"/audio?v={published.version}"
        bucket, key = split_s3(join(self.location, published.audio))
        return str(
            self.client.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=PRESIGNED_SECONDS
            )
        )

    def local_audio(self, published: "Published | None" = None) -> Path:
        """The chapter WAV on this machine (downloaded once per version from S3)."""
        published = published or self.published()
        if self.client is None:
            return Path(self.location) / published.audio
        tag = hashlib.sha256(self.location.encode()).hexdigest()[:16]
        copy = Path(tempfile.gettempdir()) / f"narrator-review-{tag}.wav"
        stamp = copy.with_suffix(".version")
        if not copy.exists() or not stamp.exists() or stamp.read_text() != published.version:
            bucket, key = split_s3(join(self.location, published.audio))
            self.client.download_file(bucket, key, str(copy))
            stamp.write_text(published.version)
        return copy

    def view(self) -> dict[str, Any]:
        """Every chunk with its text, takes, scores and flags; the chapter's figures."""
        published = self.published()
        metadata = published.metadata
        raw = self.read("validation.json")
        findings = {f["index"]: f for f in json.loads(raw)["chunks"]} if raw else {}
        takes = {e.index: e for e in parse_takes(self.read(TAKES), TAKES).chunks}
        chunks = []
        for record in metadata["chunks"]:
            index = record["index"]
            finding = findings.get(index, {})
            entry = takes.get(index)
            chunks.append(
                {
                    "index": index,
                    "text": record["display"],
                    "spoken": record["text"],
                    "heard": record["transcript"],
                    "score": record["best_score"],
                    "passed": record["passed"],
                    "reasons": record["reasons"],
                    "flags": finding.get("flags", []),
                    "check_heard": finding.get("heard"),
                    "start": record["start"],
                    "end": record["end"],
                    "take": record.get("take", 0),
                    "kept": bool(entry and entry.kept),
                    "takes": [
                        {**t.model_dump(), "url": f"/takes/{t.cache_key}.wav"}
                        for t in (entry.takes if entry else [])
                    ],
                }
            )
        validation = metadata.get("validation") or {}
        return {
            "title": Path(metadata["audio"]["file"]).stem,
            "location": self.location,
            "version": published.version,
            "audio_url": self.audio_url(published),
            "duration": metadata["audio"]["duration_seconds"],
            "lufs": metadata["audio"]["integrated_lufs"],
            "wer": validation.get("wer"),
            "chunks": chunks,
        }

    def peaks(self) -> list[list[float]]:
        """Each chunk's waveform: PEAK_BINS columns of its loudest sample, 0..1."""
        published = self.published()
        spans = [(r["start"], r["end"]) for r in published.metadata["chunks"]]
        pictures = []
        with sf.SoundFile(str(self.local_audio(published))) as audio:
            rate = audio.samplerate
            for start, end in spans:
                audio.seek(min(audio.frames, int(start * rate)))
                samples = audio.read(max(1, int((end - start) * rate)), dtype="float32")
                columns = np.array_split(np.abs(samples), PEAK_BINS) if samples.size else []
                pictures.append([round(float(c.max()), 3) if c.size else 0.0 for c in columns])
        return pictures
