"""The wire contract between the flow and a worker: one request = one chunk.

Seed 000's input/output schema, validated with pydantic on both sides. Field names are the
seed's (`audio_prompt_url`, `n_candidates`, `whisper_threshold`, ...) so an existing caller of
the seed's handler keeps working. Every default below is the one a request gets when the
field is left out.
"""

import hashlib
import json
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)

from gpu_worker.errors import InputError
from gpu_worker.redaction import redact

MAX_TEXT_CHARS = 2000  # a chunk, not a chapter: the flow splits long text first


class GenerationParams(BaseModel):
    """How to speak and how hard to try: everything in a request but the text and voice."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    language_id: str = Field(
        "en",
        min_length=2,
        max_length=8,
        description="Language of the text (multilingual engines and Whisper).",
    )
    exaggeration: float = Field(0.5, ge=0.0, le=2.0, description="Chatterbox emotion intensity.")
    cfg_weight: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Chatterbox guidance weight (lower is slower, more deliberate speech).",
    )
    temperature: float = Field(0.8, gt=0.0, le=2.0, description="Sampling temperature.")
    seed: int = Field(
        0,
        ge=0,
        lt=2**31,
        description="Seed of the first candidate; candidate k "
        "of round r uses seed + r * n_candidates + k.",
    )
    n_candidates: int = Field(3, ge=1, le=10, description="Candidates per round.")
    whisper_threshold: float = Field(
        85.0, ge=0.0, le=100.0, description="Score (0-100) a candidate's transcript needs to pass."
    )
    max_retries: int = Field(2, ge=0, le=10, description="Extra rounds when no candidate passes.")
    accept_score: float | None = Field(
        None,
        ge=0.0,
        le=100.0,
        description="Early acceptance: a round makes no more candidates once one passes "
        "every gate with at least this score (engines that synthesise one candidate at a "
        "time only; a batched GPU engine makes its round in one batch). None: off, every "
        "round makes all n_candidates.",
    )

    @model_serializer(mode="wrap")
    def _omit_unset_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Fields added later (accept_score, respellings, the neighbours' text, a role's
        voice_settings) are left out
        of dumps while unset, so requests (and the chunk cache keys hashed from them) made
        before they existed stay as they were, and an older worker still takes them."""
        data: dict[str, Any] = handler(self)
        for name in ("accept_score", "respellings", "previous_text", "next_text", "voice_settings"):
            if name in data and data[name] in (None, {}):
                data.pop(name)
        return data


class GenerateRequest(GenerationParams):
    """One chunk: what to say, in which voice, and the generation parameters."""

    text: str = Field(
        min_length=1,
        max_length=MAX_TEXT_CHARS,
        description="The chunk to speak, already normalised for speech.",
    )
    voice: str | None = Field(
        None,
        description="A voice the engine has built in (see its "
        "voices()); None means the engine's default voice.",
    )
    audio_prompt_url: str | None = Field(
        None,
        description="Reference audio to clone: https URL, "
        "s3:// URI or a path under the worker's volume.",
    )
    respellings: dict[str, str] = Field(
        default_factory=dict,
        max_length=100,
        description="Respellings the text holds from a pronunciation lexicon, as "
        "{respelling: word}: a take heard saying the word itself is a match too.",
    )
    previous_text: str | None = Field(
        None,
        max_length=MAX_TEXT_CHARS,
        description="The same speaker's chunk before this one, for engines that carry "
        "prosody across chunks (ElevenLabs); never part of the cache key.",
    )
    next_text: str | None = Field(
        None, max_length=MAX_TEXT_CHARS, description="The same speaker's next chunk (as above)."
    )
    voice_settings: dict[str, float | bool] | None = Field(
        None,
        description="ElevenLabs voice_settings for this chunk's speaker (a cast role's), over "
        "the run's; other engines ignore them. Part of the cache key when set.",
    )


class CandidateReport(BaseModel):
    """One candidate: its seed, what Whisper heard, and how it scored."""

    round: int
    seed: int
    score: float
    passed: bool
    transcript: str
    duration_seconds: float
    reasons: list[str] = Field(default_factory=list, description="Why it failed, if it did.")
    synthesis_ms: float
    validation_ms: float


class GenerateMetadata(BaseModel):
    candidates_generated: int
    candidates_skipped: int = Field(
        0,
        description="Candidates not made because one was accepted early (accept_score): "
        "the synthesis and validation this request saved.",
    )
    candidates_passed: int
    all_scores: list[float]
    retries_used: int
    generation_time_ms: float
    validation_time_ms: float
    engine: str
    validator: str
    candidates: list[CandidateReport]


class WordTiming(BaseModel):
    """A word Whisper heard in the returned audio, as it wrote it, with its time."""

    word: str
    start: float
    end: float


class GenerateResult(BaseModel):
    """The best candidate's audio (16-bit mono WAV, base64) and every score."""

    status: Literal["success"] = "success"
    audio_base64: str
    best_score: float
    passed: bool = Field(description="Whether the best candidate passed every gate.")
    reasons: list[str] = Field(
        default_factory=list,
        description="Why the best candidate "
        "did not pass, when it did not (reason codes from qc.py).",
    )
    transcript: str
    words: list[WordTiming] = Field(
        default_factory=list,
        description="Word timings in the returned audio (subtitles follow them).",
    )
    sample_rate: int
    audio_duration_seconds: float
    request_sha256: str | None = Field(
        None,
        description="request_digest of the request this answers: the client checks that it "
        "is the one it sent (a result from older workers has none).",
    )
    metadata: GenerateMetadata


# what a client says of a result without request_sha256
NO_DIGEST = (
    "the worker did not say which request it answered (an image older than this client); "
    "deploy the current gpu_worker image"
)


def request_digest(request: GenerateRequest) -> str:
    """sha256 of a request as both sides see it once validated: the worker returns it with
    its result, so a client can tell an answer to its own request from anyone else's."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def explain(error: ValidationError) -> str:
    """A pydantic error as one line: each bad field, what is wrong, and what was given."""
    problems = []
    for err in error.errors():
        where = ".".join(str(p) for p in err["loc"]) or "input"
        given = err.get("input")
        shown = err["type"] != "missing" and not isinstance(given, dict)
        message = err["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}" + (f" (got {redact(repr(given))})" if shown else ""))
    return "; ".join(problems)


def parse_request(payload: object) -> GenerateRequest:
    """Validate a job's input; a bad field becomes an InputError that names it and its limits."""
    try:
        return GenerateRequest.model_validate(payload)
    except ValidationError as e:
        raise InputError(f"invalid request: {explain(e)}") from e
