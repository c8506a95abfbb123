"""A local stand-in for ElevenLabs' text-to-speech API, for tests and benchmarks (which
cannot reach the real one), over a real socket, speaking the documented contract the
backend (tasks/backends/elevenlabs.py) uses:

    POST /v1/text-to-speech/{voice_id}?output_format=pcm_24000|mp3_44100_128  xi-api-key
         {"text", "model_id", "voice_settings", "seed", "previous_text", "next_text",
          "previous_request_ids"}
    200  24 kHz 16-bit mono PCM (or MP3), headers request-id, current-concurrent-requests,
         maximum-concurrent-requests
    403  {"detail": {"status": "output_format_not_allowed", ...}}  (a plan without it)
    429  {"detail": {"status": "too_many_concurrent_requests" | "system_busy", "message"}}
    401  {"detail": {"status": "invalid_api_key" | "quota_exceeded", "message"}}
    404  {"detail": {"status": "voice_not_found", "message"}}     422 a field's error list

    GET  /v1/voices/{voice_id}                                      header xi-api-key
    200  {"voice_id", "name"}; 404 voice_not_found; 401 invalid_api_key

The speech is real: the embedded engine reads the text in the voice `voices` maps the voice
id to, so the backend's Whisper check hears what it would hear. Every request is recorded
(voice lookups in `voice_lookups`).
"""

import asyncio
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from gpu_worker.engines.embedded import EmbeddedEngine
from gpu_worker.schema import GenerateRequest
from gpu_worker.settings import WorkerSettings


@dataclass
class Received:
    voice_id: str
    text: str
    body: dict[str, Any]
    status: int
    in_flight: int  # requests being served when this one arrived (itself included)
    limit: int  # the plan's concurrency when it arrived
    started: float
    ended: float = 0.0
    request_id: str = ""  # the request-id header it was answered with


FORMATS = ("pcm_24000", "mp3_44100_128")


def mp3(pcm: bytes) -> bytes:
    """24 kHz 16-bit PCM as ElevenLabs' mp3_44100_128: 44.1 kHz, 128 kbps, mono."""
    import io

    import av

    out = io.BytesIO()
    with av.open(out, "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=44100, layout="mono")
        assert isinstance(stream, av.AudioStream)
        stream.bit_rate = 128_000
        frame = av.AudioFrame.from_ndarray(
            np.frombuffer(pcm, "<i2")[None, :], format="s16", layout="mono"
        )
        frame.sample_rate = 24000
        resampler = av.AudioResampler(format=stream.format, layout="mono", rate=44100,
                                      frame_size=stream.frame_size or None)  # fmt: skip
        for converted in [*resampler.resample(frame), *resampler.resample(None)]:
            container.mux(stream.encode(converted))
        container.mux(stream.encode(None))
    return out.getvalue()


@dataclass
class FakeElevenLabs:
    key: str
    voices: dict[str, str] = field(default_factory=lambda: {"narrator-id": "heart"})
    concurrency: int = 5  # the plan's; a test may lower it mid-run
    latency: float = 0.0  # seconds an answer takes at least, its speech included
    busy_first: int = 0  # answer this many requests 429 system_busy first
    characters_left: int | None = None  # the quota; None: unlimited
    received: list[Received] = field(default_factory=list)
    voice_lookups: list[str] = field(default_factory=list)  # GET /v1/voices/{id} asked
    formats: tuple[str, ...] = FORMATS  # the output formats the plan offers

    def __post_init__(self) -> None:
        self._engine = EmbeddedEngine(WorkerSettings())
        self._speaking = threading.Lock()
        self._in_flight = 0
        self._count = itertools.count(1)

    def answered(self, status: int = 200) -> list[Received]:
        return [r for r in self.received if r.status == status]

    def speech(self, text: str, voice: str, seed: int) -> bytes:
        with self._speaking:  # one synthesis at a time: the engine is not shared-safe
            audio = self._engine.synthesize(GenerateRequest(text=text, voice=voice), seed)
        return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()

    @property
    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/voices/{voice_id}")
        async def voice(voice_id: str, request: Request) -> JSONResponse:
            self.voice_lookups.append(voice_id)
            if request.headers.get("xi-api-key") != self.key:
                detail = {"status": "invalid_api_key", "message": "Invalid API key"}
                return JSONResponse({"detail": detail}, status_code=401)
            if voice_id not in self.voices:
                detail = {
                    "status": "voice_not_found",
                    "message": f"A voice with voice_id {voice_id} was not found.",
                }
                return JSONResponse({"detail": detail}, status_code=404)
            return JSONResponse({"voice_id": voice_id, "name": self.voices[voice_id]})

        @app.post("/v1/text-to-speech/{voice_id}")
        async def speak(voice_id: str, request: Request) -> Response:
            body = await request.json()
            self._in_flight += 1
            record = Received(
                voice_id, str(body.get("text", "")), body, 200, self._in_flight,
                self.concurrency, time.monotonic(),
            )  # fmt: skip
            self.received.append(record)
            try:
                record.status, answer = await self._answer(voice_id, body, request)
                record.request_id = answer.headers.get("request-id", "")
                return answer
            finally:
                self._in_flight -= 1
                record.ended = time.monotonic()

        return app

    async def _answer(self, voice_id: str, body: dict[str, Any], request: Request) -> Any:
        def error(status: int, kind: str, message: str) -> tuple[int, JSONResponse]:
            detail = {"status": kind, "message": message}
            return status, JSONResponse({"detail": detail}, status_code=status)

        if request.headers.get("xi-api-key") != self.key:
            return error(401, "invalid_api_key", "Invalid API key")
        output_format = request.query_params.get("output_format", "mp3_44100_128")
        if output_format not in FORMATS:
            return error(422, "invalid_output_format", f"this stand-in speaks {FORMATS} only")
        if output_format not in self.formats:
            return error(
                403,
                "output_format_not_allowed",
                f"Your subscription does not include the {output_format} output_format.",
            )
        if not body.get("text"):
            fields = [{"loc": ["body", "text"], "msg": "Field required", "type": "missing"}]
            return 422, JSONResponse({"detail": fields}, status_code=422)
        if voice_id not in self.voices:
            return error(404, "voice_not_found", f"A voice with voice_id {voice_id} was not found.")
        if self._in_flight > self.concurrency:
            return error(429, "too_many_concurrent_requests", "Too many concurrent requests.")
        if next(self._count) <= self.busy_first:
            return error(429, "system_busy", "Our services are experiencing high traffic.")
        if self.characters_left is not None:
            if self.characters_left < len(body["text"]):
                return error(401, "quota_exceeded", "This request exceeds your quota of 10000.")
            self.characters_left -= len(body["text"])
        started = time.monotonic()
        pcm = await asyncio.to_thread(
            self.speech, body["text"], self.voices[voice_id], int(body.get("seed", 0))
        )
        await asyncio.sleep(max(0.0, self.latency - (time.monotonic() - started)))
        headers = {
            "request-id": f"req-{len(self.received)}",
            "current-concurrent-requests": str(self._in_flight),
            "maximum-concurrent-requests": str(self.concurrency),
        }
        if output_format.startswith("mp3"):
            return 200, Response(mp3(pcm), media_type="audio/mpeg", headers=headers)
        return 200, Response(pcm, media_type="audio/pcm", headers=headers)
