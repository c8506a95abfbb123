"""The review page's server: `narrator review OUT_DIR` on 127.0.0.1.

    GET  /                  the page (static/: no build step, nothing from a CDN)
    GET  /api/chapter       every chunk: text, heard, score, gates, flags, span, takes
    GET  /api/peaks         each chunk's waveform picture
    GET  /audio             the chapter WAV (range requests: the player seeks); S3: presigned
    GET  /takes/{key}.wav   one take's audio, from the chunk cache
    POST /api/apply         {"redo": [..], "choose": {chunk: take}, "keep": [..], "release": [..]}
                            runs redo_chunks (flows/redo.py) in the background
    GET  /api/job           that run: idle | running | done | failed, and its message

One redo runs at a time (a second is answered 409). The redo is the same flow as `narrator
redo` and the redo-chunks deployment, run in this process with the settings the command
was started with.
"""

import contextvars
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.middleware.trustedhost import TrustedHostMiddleware

from flows.review.view import Chapter
from gpu_worker.errors import NarratorError
from gpu_worker.redaction import redact
from tasks.cache import DamagedEntry, chunk_store, read_chunk

STATIC = Path(__file__).parent / "static"


class Apply(BaseModel):
    """What the page asks of the chapter (chunk indices)."""

    model_config = ConfigDict(extra="forbid")

    redo: list[int] = Field(default_factory=list)
    choose: dict[int, int] = Field(default_factory=dict)
    keep: list[int] = Field(default_factory=list)
    release: list[int] = Field(default_factory=list)


class Job:
    """The one redo this server runs at a time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.state = "idle"
        self.message = ""
        self.asked: dict[str, Any] = {}
        self.seconds = 0.0

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "message": self.message,
            "asked": self.asked,
            "seconds": self.seconds,
        }

    def start(self, asked: Apply, run: Callable[[], Any], context: contextvars.Context) -> bool:
        """Run `run` in a thread of its own, in a copy of `context`."""
        with self.lock:
            if self.state == "running":
                return False
            self.state, self.message, self.asked = "running", "", asked.model_dump()
        thread = threading.Thread(target=context.copy().run, args=(self._run, run), daemon=True)
        thread.start()
        return True

    def _run(self, run: Callable[[], Any]) -> None:
        started = time.monotonic()
        state, message = "failed", "stopped"
        try:
            result = run()
            state, message = "done", f"{len(result.files)} files published"
        except NarratorError as e:
            message = str(e)
        except Exception as e:  # the page shows it; the server stays up
            message = f"{type(e).__name__}: {e}"
        finally:  # never left "running", or every later apply would be refused
            with self.lock:
                self.state, self.message = state, redact(message)
                self.seconds = round(time.monotonic() - started, 1)


def review_app(location: str, endpoint_url: str | None, cache: Path | str) -> FastAPI:
    """The page for the chapter published at `location`; takes are read from `cache`."""
    from flows.redo import redo_chunks

    chapter = Chapter(location, endpoint_url)
    chapter.published()  # a folder that is not a published chapter fails here, at once
    job = Job()
    # the settings (flows.services.configured) and Prefect API of the caller, for the redo:
    # requests are served in threads that do not see them
    caller = contextvars.copy_context()
    app = FastAPI(title="narrator review", docs_url=None, redoc_url=None)
    # only pages served from this machine's own names: another site's page cannot reach
    # it through a name that resolves to 127.0.0.1 (DNS rebinding)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost"])
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(NarratorError)
    def _refused(request: Any, error: NarratorError) -> JSONResponse:
        return JSONResponse({"detail": redact(str(error))}, status_code=400)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/api/chapter")
    def view() -> dict[str, Any]:
        return {**chapter.view(), "job": job.status()}

    @app.get("/api/peaks")
    def peaks() -> list[list[float]]:
        return chapter.peaks()

    @app.get("/audio")
    def audio() -> Response:
        return FileResponse(chapter.local_audio(), media_type="audio/wav")

    @app.get("/takes/{key}.wav")
    def take(key: str) -> Response:
        if key not in chapter.take_keys():
            raise HTTPException(404, detail=f"no take {key[:12]}... in this chapter")
        try:
            found = read_chunk(chunk_store(cache), key, cache)
        except DamagedEntry as e:
            raise HTTPException(410, detail=f"take {key[:12]}...'s cache entry {e}") from e
        if found is None:
            raise HTTPException(410, detail=f"take {key[:12]}... is no longer in the cache")
        return Response(found.wav, media_type="audio/wav")

    @app.post("/api/apply", status_code=202)
    def apply(asked: Apply) -> dict[str, Any]:
        def run() -> Any:
            return redo_chunks(location, asked.redo, asked.choose, asked.keep, asked.release)

        if not job.start(asked, run, caller):
            raise HTTPException(409, detail="a redo is already running; wait for it")
        return job.status()

    @app.get("/api/job")
    def status() -> dict[str, Any]:
        return job.status()

    return app
