"""The speech API's pipeline: text in, encoded audio out in reading order, as soon as each
chunk is ready.

`speak` is a Prefect flow (each request is a flow run, with a task per chunk, its retries
and logs, as a chapter has): the text is normalised and chunked as a chapter is, each chunk
generated through the configured backend and cached (map_chunks), at most the backend's
concurrency at once. `SpeechStream` listens to it (flows.map_chunks.Progress): chunks
finish in any order, and it encodes the contiguous prefix of finished ones, joined as a
chapter is joined (tasks/audio.py Joiner: levelled, faded, the pause after each), so the
first bytes leave when the first chunk is ready and never out of order. A chunk that
fails ends the stream with an error instead of a gap: the response is cut (the client
sees an incomplete body), never silently short.
"""

import contextvars
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from flows.map_chunks import ChunkOutcome, listening, map_chunks, progress_listener
from flows.parameters import checked_flow
from flows.services import services
from gpu_worker.errors import InputError, PermanentError, TransientError
from gpu_worker.redaction import CredentialFree
from gpu_worker.wav import decode_wav
from tasks.audio import OUTPUT_RATE, Joiner, read_job_audio
from tasks.cache import chunk_store
from tasks.chunk_generation import plan_jobs
from tasks.encode import SpeechFormat, StreamEncoder
from tasks.options import NarrationOptions
from tasks.text import Chunk
from tasks.text.chunking import make_chunks
from tasks.voice_resolution import chunk_requests


class SpeechStream:
    """Chunks in (from the flow's thread), encoded bytes out in order (to the response)."""

    def __init__(self, kind: SpeechFormat, options: NarrationOptions, deadline: float) -> None:
        self.kind, self.options, self.deadline = kind, options, deadline
        self.events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()

    # the flow's side
    def begin(self, chunks: list[Chunk], storage: Path | str) -> None:
        self.events.put(("begin", (chunks, storage)))

    def planned(self, total: int) -> None:
        """Told by map_chunks; `begin` already knows the chunks."""

    def finished(self, outcome: ChunkOutcome) -> None:
        self.events.put(("chunk", outcome))

    def ended(self, error: BaseException | None) -> None:
        self.events.put(("end", error))

    # the response's side
    def _next(self) -> tuple[str, Any]:
        left = self.deadline - time.monotonic()
        try:
            return self.events.get(timeout=max(0.0, left))
        except queue.Empty:
            raise TransientError("the speech took longer than the request's time limit") from None

    def audio(self) -> Iterator[np.ndarray]:
        """The speech as float samples at OUTPUT_RATE, chunk by chunk in reading order."""
        kind, value = self._next()
        if kind == "end":
            raise value or PermanentError("the speech ended before it began")
        chunks, storage = value
        store = chunk_store(storage)
        join = Joiner(self.options.audio, self.options.loudness, OUTPUT_RATE)
        yield join.lead_in()
        ready: dict[int, ChunkOutcome] = {}
        after = 0  # the next chunk to send
        while after < len(chunks):
            kind, value = self._next()
            if kind == "end":
                raise value or PermanentError("the speech ended early")
            outcome: ChunkOutcome = value
            if outcome.audio is None:
                raise PermanentError(f"chunk {outcome.job.index} failed: {outcome.error}")
            ready[outcome.job.index] = outcome
            while after in ready:
                done = ready.pop(after)
                samples, rate = decode_wav(_wav(done, store, storage), f"chunk {after}")
                chunk = chunks[after]
                kind_after = (
                    chunk.pause_seconds if chunk.pause_seconds is not None else chunk.break_after
                )
                speech, pause, _ = join.chunk(samples, rate, kind_after, self.options.audio.speed)
                yield np.concatenate([speech, pause])
                after += 1

    def encoded(self) -> Iterator[bytes]:
        """The speech in this stream's format, bytes as the encoder gives them."""
        encoder = StreamEncoder(self.kind, OUTPUT_RATE)
        for samples in self.audio():
            data = encoder.write(samples)
            if data:
                yield data
        yield encoder.close()


def _wav(outcome: ChunkOutcome, store: Any, storage: Path | str) -> bytes:
    if outcome.not_cached and outcome.audio is not None:
        return outcome.audio.wav  # the cache could not store it: the run kept it
    return read_job_audio(store, outcome.job, storage).wav


@checked_flow(name="speak")
def speak(
    text: str,
    voice: CredentialFree | None = None,
    options: NarrationOptions = NarrationOptions(),  # noqa: B008 - frozen, shown in the UI
) -> int:
    """Say `text` (a speech API request): chunked, generated and cached as a chapter is;
    the audio goes to the request's stream as each chunk is ready. Returns the chunks.

    Args:
        text: What to say (plain text; normalised for speech as a chapter is).
        voice: Built-in or library voice name (None: the engine's default).
        options: How to generate and join the audio.
    """
    built = services()
    try:
        chunks = make_chunks(text, options.chunking, ())
    except InputError:  # said of a chapter: no words, only punctuation or symbols
        chunks = []
    if not chunks:
        raise InputError("input: nothing in it can be said aloud; send words")
    generation = options.generation
    if built.backend.billed_per_take and "n_candidates" not in generation.model_fields_set:
        generation = generation.model_copy(update={"n_candidates": 1})
    requests = chunk_requests(
        chunks, voice, generation, None, built.library, built.backend.uses_neighbours
    )
    jobs = plan_jobs(requests, built.backend)
    storage = built.cache()
    stream = progress_listener.get()
    if isinstance(stream, SpeechStream):
        stream.begin(chunks, storage)
    map_chunks(jobs, built.backend, storage, built.settings, options, "speech")
    return len(chunks)


def start(text: str, voice: str | None, options: NarrationOptions, stream: SpeechStream) -> None:
    """Run `speak` in a thread of its own (in this context: its settings), feeding `stream`."""
    context = contextvars.copy_context()

    def run() -> None:
        with listening(stream):
            try:
                speak(text, voice, options)
            except BaseException as e:
                stream.ended(e)
                return
        stream.ended(None)

    threading.Thread(target=context.run, args=(run,), name="speak", daemon=True).start()
