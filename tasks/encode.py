"""Delivery formats from the chapter WAV: MP3 and M4B (AAC in MP4) with chapter markers;
and the speech API's formats, encoded as the audio is made (`StreamEncoder`).

PyAV (a faster-whisper dependency) carries its own FFmpeg libraries, so no system ffmpeg
is needed. MP3 follows ACX's delivery spec (44.1 kHz, 192 kbps constant bit rate); M4B is
what audiobook players read, its chapter markers at the chapter's headings. Both decode to
the WAV's duration: the MP3's LAME header and the MP4's edit list tell decoders to drop the
encoders' priming samples.
"""

import io
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
from prefect import task
from prefect.cache_policies import NONE

from tasks.outputs import OutputDir

Format = Literal["mp3", "m4b"]
SETTINGS = {  # codec, container, sample rate, bit rate
    "mp3": ("libmp3lame", "mp3", 44100, 192_000),
    "m4b": ("aac", "ipod", 44100, 96_000),
}


@dataclass(frozen=True)
class Marker:
    """A chapter marker: a title and where it starts and ends, in seconds."""

    title: str
    start: float
    end: float


def encode(wav: Path, out: Path, kind: Format, title: str, markers: list[Marker]) -> Path:
    """Encode `wav` into `out` as `kind`, with `title` and (M4B only) chapter `markers`."""
    codec, container, rate, bit_rate = SETTINGS[kind]
    with av.open(str(wav)) as source, av.open(str(out), "w", format=container) as target:
        stream = target.add_stream(codec, rate=rate, layout="mono")
        assert isinstance(stream, av.AudioStream)
        stream.bit_rate = bit_rate
        target.metadata["title"] = title
        if kind == "m4b" and markers:
            target.set_chapters(
                [
                    {
                        "id": i + 1,
                        "start": round(m.start * 1000),
                        "end": round(m.end * 1000),
                        "time_base": Fraction(1, 1000),
                        "metadata": {"title": m.title},
                    }
                    for i, m in enumerate(markers)
                ]
            )
        resampler = av.AudioResampler(
            format=stream.format, layout="mono", rate=rate, frame_size=stream.frame_size or None
        )
        for frame in source.decode(audio=0):
            for converted in resampler.resample(frame):
                target.mux(stream.encode(converted))
        for converted in resampler.resample(None):
            target.mux(stream.encode(converted))
        target.mux(stream.encode(None))
    return out


def decoded_seconds(path: Path) -> float:
    """How long a file plays when decoded (what a player hears, priming samples dropped)."""
    samples, rate = 0, 0
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            samples += frame.samples
            rate = frame.sample_rate
    return samples / rate if rate else 0.0


def markers(titles: list[tuple[str, float]], title: str, duration: float) -> list[Marker]:
    """Chapter markers from (heading, start) pairs: each runs to the next; audio before the
    first heading is a marker named `title`. No headings: one marker for the whole file."""
    starts = [(t, s) for t, s in titles if s < duration]
    if not starts or starts[0][1] > 1.0:
        starts.insert(0, (title, 0.0))
    starts[0] = (starts[0][0], 0.0)
    ends = [s for _, s in starts[1:]] + [duration]
    return [Marker(t, round(s, 3), round(e, 3)) for (t, s), e in zip(starts, ends, strict=True)]


@task(name="encode", cache_policy=NONE)
def encode_outputs(
    wav: Path,
    output: OutputDir,
    stem: str,
    title: str,
    chapter_markers: list[Marker],
    formats: list[Format],
) -> list[Path]:
    """MP3 and/or M4B beside the WAV, staged for publishing with it."""
    return [
        encode(wav, output.path(f"{stem}.{kind}"), kind, title, chapter_markers) for kind in formats
    ]


# The speech API's response formats (OpenAI's): container, codec, content type. All are
# 24 kHz mono, as the chapter is; Opus runs at 48 kHz, the rate it is defined at.
SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
SPEECH_FORMATS: dict[str, tuple[str, str, str]] = {
    "mp3": ("mp3", "libmp3lame", "audio/mpeg"),
    "opus": ("ogg", "libopus", "audio/ogg"),
    "aac": ("adts", "aac", "audio/aac"),
    "flac": ("flac", "flac", "audio/flac"),
    "wav": ("", "", "audio/wav"),
    "pcm": ("", "", "audio/pcm"),
}
STREAM_BIT_RATE = 128_000


class _Sink(io.RawIOBase):
    """Where an encoder's bytes wait until the stream takes them."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


class StreamEncoder:
    """Float samples in, encoded bytes out as soon as the encoder gives them: each
    `write` returns what is ready, `close` the rest. WAV is written with the streaming
    convention for an unknown length (sizes 0xFFFFFFFF: read to the end), PCM is raw
    16-bit little-endian."""

    def __init__(self, kind: SpeechFormat, rate: int) -> None:
        self.kind, self.rate = kind, rate
        container, codec, self.content_type = SPEECH_FORMATS[kind]
        self.header = b""
        if kind == "wav":
            self.header = (
                b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt "
                + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
                + b"data" + struct.pack("<I", 0xFFFFFFFF)
            )  # fmt: skip
        if not container:
            return
        self.sink = _Sink()
        self.container = av.open(self.sink, "w", format=container)
        stream = self.container.add_stream(
            codec, rate=48000 if kind == "opus" else rate, layout="mono"
        )
        assert isinstance(stream, av.AudioStream)
        self.stream: av.AudioStream = stream
        if kind != "flac":
            self.stream.bit_rate = STREAM_BIT_RATE
        self.resampler = av.AudioResampler(
            format=self.stream.format,
            layout="mono",
            rate=self.stream.rate,
            frame_size=self.stream.frame_size or None,
        )

    def write(self, samples: np.ndarray) -> bytes:
        head, self.header = self.header, b""
        if self.kind in ("wav", "pcm"):
            pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
            return head + pcm.tobytes()
        if samples.size == 0:
            return b""
        frame = av.AudioFrame.from_ndarray(
            samples.astype(np.float32)[None, :], format="flt", layout="mono"
        )
        frame.sample_rate = self.rate
        self._mux(self.resampler.resample(frame))
        return self.sink.take()

    def close(self) -> bytes:
        head, self.header = self.header, b""
        if self.kind in ("wav", "pcm"):
            return head
        self._mux(self.resampler.resample(None))
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()
        return self.sink.take()

    def _mux(self, frames: list[av.AudioFrame]) -> None:
        for converted in frames:
            for packet in self.stream.encode(converted):
                self.container.mux(packet)
