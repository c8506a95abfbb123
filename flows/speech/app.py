"""`narrator serve`: the speech API, OpenAI-compatible, with seed 004's routes.

    POST   /v1/audio/speech   OpenAI's: {model, input, voice, response_format, speed,
                              instructions, stream_format} and narrator's extras
                              {candidates, threshold, validate, language}
    GET    /v1/models         the engine, as OpenAI lists models
    POST   /tts/generate      seed 004's: {text, voice_id} -> audio/wav
    POST   /voices            multipart `name` + `file`: a clip into the voice library
    GET    /voices            the library
    DELETE /voices/{name}     remove one
    GET    /health            unauthenticated, for the container's health check

Every response streams: audio leaves in reading order as each chunk is ready
(flows/speech/stream.py). `stream_format: "sse"` sends it as OpenAI's server-sent events
(`speech.audio.delta` with base64 audio, then `speech.audio.done`).

OpenAI's fields as narrator reads them: `model` is accepted and ignored (one engine
serves; /v1/models names it); `voice` is a narrator voice (built-in or library); OpenAI's
own voice names (alloy, nova, ...) read as the engine's default voice, so tools that send
them work; `instructions` is ignored (the engines take no style prompt); `speed` is the
pitch-preserving pace, 0.5-2.0.

Limits (`ApiSettings`): input characters, body bytes (a declared Content-Length over the
limit is refused before anything is read; a body without one is counted as it arrives),
requests generating at once (beyond: 429 with Retry-After), and a time limit per
request. Errors are JSON `{"detail": message, "field": name}`, the message saying what to
change. The API key (`NARRATOR_API_KEY`) is accepted as `Authorization: Bearer` or
`X-API-Key`, compared in constant time.
"""

import asyncio
import base64
import hmac
import html
import itertools
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flows.services import configured
from flows.speech.stream import SpeechStream, start
from gpu_worker.errors import InputError, NarratorError
from gpu_worker.redaction import redact, register_secret
from gpu_worker.schema import GenerationParams
from tasks.audio import AudioOptions
from tasks.encode import SPEECH_FORMATS, SpeechFormat
from tasks.options import NarrationOptions
from tasks.settings import NarratorSettings
from tasks.text.decode import html_to_text
from tasks.voice_library import NAME

OPENAI_VOICES = frozenset(
    "alloy ash ballad coral echo fable onyx nova sage shimmer verse marin cedar".split()
)


class ApiSettings(BaseSettings):
    """The server's key and limits, from NARRATOR_API_* (NARRATOR_API_KEY, ...)."""

    model_config = SettingsConfigDict(env_prefix="NARRATOR_API_", frozen=True)

    key: str | None = Field(
        None, description="The API key clients send; unset: no authentication (loopback only)."
    )
    max_input_chars: int = Field(4096, ge=1, description="Longest input (OpenAI's limit).")
    max_body_bytes: int = Field(64 * 1024, ge=1024, description="Largest JSON request body.")
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="Largest voice clip.")
    max_in_flight: int = Field(4, ge=1, description="Requests generating at once; beyond: 429.")
    request_timeout_s: float = Field(600.0, gt=0, description="Longest one request may take.")


class Speech(BaseModel):
    """POST /v1/audio/speech: OpenAI's fields, then narrator's."""

    model_config = ConfigDict(extra="forbid")

    model: str = "narrator"
    input: str = Field(min_length=1)
    voice: str | None = None
    response_format: SpeechFormat = "mp3"
    speed: float = Field(1.0, ge=0.5, le=2.0)
    instructions: str | None = None
    stream_format: Literal["audio", "sse"] = "audio"
    candidates: int | None = Field(None, ge=1, le=10)
    threshold: float | None = Field(None, ge=0, le=100)
    validate_: bool = Field(True, alias="validate")
    language: Literal["en"] = "en"


class Generate(BaseModel):
    """POST /tts/generate (seed 004)."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    voice_id: str | None = None


class ApiError(Exception):
    def __init__(self, status: int, detail: str, field: str | None = None, **headers: str) -> None:
        super().__init__(detail)
        self.status, self.detail, self.field, self.headers = status, detail, field, headers


def error(status: int, detail: str, field: str | None = None, **headers: str) -> JSONResponse:
    body: dict[str, Any] = {"detail": redact(detail)}
    if field:
        body["field"] = field
    return JSONResponse(body, status_code=status, headers=headers or None)


class BodyLimit:
    """Refuse a body over `limit` bytes with 413: at once when its Content-Length says so,
    else as soon as that many bytes have arrived (never buffering more)."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app, self.limit_for = app, limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(limit)(scope, receive, send)
            return
        seen, too_large = 0, False

        async def counted() -> Message:
            nonlocal seen, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:  # the app is told the client left; this answers for it
                too_large = True
                return {"type": "http.disconnect"}
            return message

        async def sending(message: Message) -> None:
            if not too_large:
                await send(message)

        try:
            await self.app(scope, counted, sending)
        except Exception:
            if not too_large:
                raise
        if too_large:
            await _too_large(limit)(scope, receive, send)


def _too_large(limit: int) -> JSONResponse:
    return error(413, f"the request body is over the {limit:,}-byte limit; send less")


class Slots:
    """Requests generating at once: a slot is taken without waiting, or the request is
    answered 429."""

    def __init__(self, size: int) -> None:
        self.size, self.used, self.lock = size, 0, threading.Lock()

    def take(self) -> bool:
        with self.lock:
            if self.used >= self.size:
                return False
            self.used += 1
            return True

    def give(self) -> None:
        with self.lock:
            self.used -= 1


def create_app(api: ApiSettings, settings: NarratorSettings | None = None) -> FastAPI:
    """The speech API, generating with `settings` (None: the environment's)."""
    app = FastAPI(title="narrator speech API", docs_url=None, redoc_url=None)
    slots = Slots(api.max_in_flight)
    register_secret(api.key)  # never in an error, a log line or a flow run's record

    def services() -> Any:
        from flows.services import services as built

        with configured(settings):
            return built()

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Callable[[Request], Any]) -> Response:
        if api.key is not None and request.url.path != "/health":
            given = request.headers.get("x-api-key") or ""
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() == "bearer":
                given = given or token.strip()
            if not hmac.compare_digest(given.encode(), api.key.encode()):
                return error(
                    401,
                    "missing or wrong API key: send Authorization: Bearer KEY or X-API-Key",
                    "authorization",
                    **{"WWW-Authenticate": "Bearer"},
                )
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
        return error(422, f"{field}: {first['msg']}", field)

    @app.exception_handler(ApiError)
    async def refused(request: Request, exc: ApiError) -> JSONResponse:
        return error(exc.status, exc.detail, exc.field, **exc.headers)

    def check_voice(voice: str | None) -> str | None:
        """The voice to generate with (None: the default), or 404 for one that is neither in
        the library, nor built in, nor one of OpenAI's names."""
        if voice is None:
            return None
        built = services()
        if _library_name(voice) and built.library.has(voice):
            return voice  # the library's first: a voice of one's own named "nova" is that one
        if voice.lower() in OPENAI_VOICES:
            return None
        try:
            built.backend.identity(voice)
        except InputError as e:
            raise ApiError(404, f"Voice not found: {voice!r} ({e})", "voice") from None
        return voice

    def respond(
        text: str, voice: str | None, kind: SpeechFormat, options: NarrationOptions, sse: bool
    ) -> StreamingResponse:
        if len(text) > api.max_input_chars:
            raise ApiError(
                400,
                f"input is {len(text):,} characters, over the {api.max_input_chars:,} "
                "limit (NARRATOR_API_MAX_INPUT_CHARS); split it into several requests",
                "input",
            )
        if not slots.take():
            raise ApiError(
                429,
                f"{api.max_in_flight} requests are being generated (NARRATOR_API_MAX_IN_FLIGHT);"
                " retry shortly",
                **{"Retry-After": "1"},
            )
        stream = SpeechStream(kind, options, time.monotonic() + api.request_timeout_s)
        try:
            voice = check_voice(voice)
            with configured(settings):
                start(_as_markdown(text), voice, options, stream)
            audio = stream.encoded()
            # the first bytes are read here: a request refused before any chunk exists is
            # answered with its error, not with a 200 and an empty body
            first = next(audio)
        except NarratorError as e:
            slots.give()
            status = 422 if isinstance(e, InputError) else 502
            raise ApiError(status, str(e), "input" if status == 422 else None) from None
        except BaseException:
            slots.give()
            raise
        body: Iterator[bytes] = itertools.chain([first], audio)
        if sse:
            body = _sse(body)
        media = "text/event-stream" if sse else SPEECH_FORMATS[kind][2]
        return StreamingResponse(_released(body, slots), media_type=media)

    @app.post("/v1/audio/speech")
    async def audio_speech(speech: Speech) -> StreamingResponse:
        generation: dict[str, Any] = {}
        if speech.candidates is not None:
            generation["n_candidates"] = speech.candidates
        if speech.threshold is not None:
            generation["whisper_threshold"] = speech.threshold
        if not speech.validate_:  # one take, kept whatever Whisper hears
            generation.update(n_candidates=1, whisper_threshold=0.0, max_retries=0)
        options = NarrationOptions(
            generation=GenerationParams(**generation),
            audio=AudioOptions(lead_in=0.0, tail=0.3, speed=speech.speed),
            formats=[],
            validate_chapter=False,
        )
        return await asyncio.to_thread(
            respond,
            speech.input,
            speech.voice,
            speech.response_format,
            options,
            speech.stream_format == "sse",
        )

    @app.post("/tts/generate")
    async def tts_generate(body: Generate) -> StreamingResponse:
        options = NarrationOptions(
            audio=AudioOptions(lead_in=0.0, tail=0.3), formats=[], validate_chapter=False
        )
        return await asyncio.to_thread(respond, body.text, body.voice_id, "wav", options, False)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        backend = await asyncio.to_thread(lambda: services().backend)
        return {
            "object": "list",
            "data": [{"id": "narrator", "object": "model", "owned_by": backend.name}],
        }

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "in_flight": slots.used, "max_in_flight": api.max_in_flight}

    @app.get("/voices")
    async def list_voices() -> list[dict[str, Any]]:
        entries = await asyncio.to_thread(lambda: services().library.entries())
        return [v.model_dump() for v in entries]

    @app.post("/voices", status_code=201)
    async def add_voice(request: Request) -> dict[str, Any]:
        parser = MultiPartParser(request.headers, request.stream(), max_files=1, max_fields=4)
        try:
            form = await parser.parse()
        except MultiPartException as e:
            raise ApiError(400, f"not a multipart form ({e}); send name and file", "file") from e
        name, upload = form.get("name"), form.get("file")
        if not isinstance(name, str) or not name:
            raise ApiError(422, "name: a voice name is required", "name")
        if upload is None or isinstance(upload, str):
            raise ApiError(422, "file: a WAV or FLAC clip is required", "file")
        data = await upload.read()
        library = await asyncio.to_thread(lambda: services().library)
        try:
            voice = await asyncio.to_thread(library.add, name, data, upload.filename or name)
        except NarratorError as e:
            raise ApiError(422, str(e), "file") from None
        return voice.model_dump()

    @app.delete("/voices/{name}", status_code=204)
    async def remove_voice(name: str) -> Response:
        library = await asyncio.to_thread(lambda: services().library)
        if not _library_name(name) or not await asyncio.to_thread(library.has, name):
            raise ApiError(404, f"Voice not found: {name!r}", "name")
        await asyncio.to_thread(library.remove, name)
        return Response(status_code=204)

    def limit_for(path: str) -> int:
        return api.max_upload_bytes if path == "/voices" else api.max_body_bytes

    return BodyLimit(app, limit_for)  # type: ignore[return-value]


def _library_name(name: str) -> bool:
    return bool(NAME.fullmatch(name))


def _as_markdown(text: str) -> str:
    """Plain input text as the chunker reads it: its paragraphs kept, nothing in it read as
    markup ("# of guests" is words, not a heading)."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    return html_to_text("".join(f"<p>{html.escape(p)}</p>" for p in paragraphs))


def _sse(audio: Iterator[bytes]) -> Iterator[bytes]:
    """OpenAI's speech events: each piece of audio base64 in a delta, then done."""
    for data in audio:
        event = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()}
        yield f"data: {json.dumps(event)}\n\n".encode()
    yield b'data: {"type": "speech.audio.done"}\n\n'


async def _released(body: Iterator[bytes], slots: Slots) -> AsyncIterator[bytes]:
    """The response body, its slot given back when it ends, however it ends."""
    try:
        while True:
            data = await asyncio.to_thread(next, body, None)
            if data is None:
                return
            yield data
    finally:
        slots.give()
