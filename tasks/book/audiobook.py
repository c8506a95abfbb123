"""The narrated chapters as one audiobook: a single M4B with a chapter marker per chapter,
the cover and the book's tags.

Chapters are joined end to end with `CHAPTER_GAP` seconds of silence between them, in one
pass (a chapter at a time, never the whole book in memory) into a WAV that the M4B encoder
(tasks/encode.py) reads once. Every chapter was already levelled to the same loudness target
by its own run, so the book's level is even; the join adds no gain. Tags are written with
mutagen in the names audiobook players read: title/album, author (artist), narrator
(composer, as Audiobookshelf and Apple Books show it), year, genre, description, media kind
"audiobook", cover art, and series with its position as the freeform SERIES / SERIES-PART
tags Audiobookshelf and Mp3tag use.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from pydantic import BaseModel, Field

from tasks.encode import Marker, encode

CHAPTER_GAP = 2.0  # seconds of silence between chapters, as narrated audiobooks leave


class BookTags(BaseModel):
    """What the audiobook's tags say beyond the book's own metadata (unset: the book's)."""

    model_config = {"frozen": True}

    title: str | None = Field(None, description="Title (default: the book's).")
    author: str | None = Field(None, description="Author (default: the book's authors).")
    narrator: str | None = Field(None, description="Narrator, for the tags and the credits.")
    year: str | None = Field(None, description="Year (default: the book's publication year).")
    genre: str = Field("Audiobook", description="Genre tag.")
    description: str | None = Field(None, description="Description (default: the book's).")
    series: str | None = Field(None, description="Series the book belongs to.")
    series_position: str | None = Field(None, description="The book's number in the series.")


@dataclass(frozen=True)
class Part:
    """One chapter of the audiobook: its title, its narrated WAV and that WAV's sha256 and
    integrated loudness (as its run published and measured it), and where in the book it
    is."""

    title: str
    wav: Path
    wav_sha256: str
    lufs: float | None = None
    location: str = ""


def join_chapters(parts: list[Part], out: Path, gap: float = CHAPTER_GAP) -> list[Marker]:
    """Write `parts` end to end into the WAV `out` (at the first part's sample rate) and
    return each part's marker: where it starts and ends in `out`, in seconds."""
    rate = sf.info(str(parts[0].wav)).samplerate
    markers, position = [], 0
    with sf.SoundFile(str(out), "w", samplerate=rate, channels=1, subtype="PCM_16") as book:
        for i, part in enumerate(parts):
            if i:
                book.write(np.zeros(round(gap * rate), np.float32))
                position += round(gap * rate)
            start = position
            with sf.SoundFile(str(part.wav)) as chapter:
                resample = (
                    soxr.ResampleStream(chapter.samplerate, rate, 1, dtype="float32")
                    if chapter.samplerate != rate
                    else None
                )
                for block in chapter.blocks(blocksize=rate * 30, dtype="float32", always_2d=True):
                    mono = block.mean(axis=1)
                    audio = resample.resample_chunk(mono) if resample else mono
                    book.write(audio)
                    position += audio.size
                if resample:
                    tail = resample.resample_chunk(np.zeros(0, np.float32), last=True)
                    book.write(tail)
                    position += tail.size
            markers.append(Marker(part.title, round(start / rate, 3), round(position / rate, 3)))
    return markers


def write_audiobook(
    parts: list[Part], out: Path, tags: BookTags, cover: bytes | None, cover_type: str | None
) -> list[Marker]:
    """The M4B at `out` (written beside it, then moved into place): every part, a marker
    each, the cover and `tags`. Returns the markers."""
    joined = out.with_name(f".{out.stem}.joined.wav")
    staged = out.with_name(f".{out.stem}.partial.m4b")
    try:
        markers = join_chapters(parts, joined)
        encode(joined, staged, "m4b", tags.title or out.stem, markers)
        write_tags(staged, tags, cover, cover_type)
        os.replace(staged, out)
    finally:
        joined.unlink(missing_ok=True)
        staged.unlink(missing_ok=True)
    return markers


def write_tags(m4b: Path, tags: BookTags, cover: bytes | None, cover_type: str | None) -> None:
    from mutagen.mp4 import MP4, MP4Cover, MP4FreeForm

    audio = MP4(str(m4b))
    if audio.tags is None:
        audio.add_tags()
    values = {
        "\xa9nam": tags.title,
        "\xa9alb": tags.title,
        "\xa9ART": tags.author,
        "aART": tags.author,
        "\xa9wrt": tags.narrator,
        "\xa9day": tags.year,
        "\xa9gen": tags.genre,
        "desc": tags.description,
    }
    for key, value in values.items():
        if value:
            audio[key] = [value]
    audio["stik"] = [2]  # media kind: audiobook
    for key, value in {"SERIES": tags.series, "SERIES-PART": tags.series_position}.items():
        if value:
            audio[f"----:com.apple.iTunes:{key}"] = [MP4FreeForm(value.encode())]
    if cover is not None and cover_type in ("image/jpeg", "image/png"):
        kind = MP4Cover.FORMAT_JPEG if cover_type == "image/jpeg" else MP4Cover.FORMAT_PNG
        audio["covr"] = [MP4Cover(cover, imageformat=kind)]
    audio.save()
