"""Orchestrator settings: where things live and how much runs at once.

Read once, from `NARRATOR_*` environment variables (or a `.env` file), at an entry point
(flows/services.py: a flow's first line, or a CLI command, which may pass its own) and
passed down as objects. Per-run choices (voice, candidates, pauses) are flow parameters
instead: tasks/options.py.
"""

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_cache_dir() -> str:
    return str(Path.home() / ".cache" / "narrator" / "chunks")


class NarratorSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="NARRATOR_", env_file=".env", extra="ignore", frozen=True
    )

    backend: Literal["local", "runpod", "elevenlabs"] = Field(
        "local",
        description="Where chunks are generated. local: the worker code in this "
        "process, on the CPU. runpod: a RunPod serverless endpoint (NARRATOR_RUNPOD_*). "
        "elevenlabs: ElevenLabs' text-to-speech API (NARRATOR_ELEVENLABS_*), heard here.",
    )
    cache_dir: str = Field(
        default_factory=_default_cache_dir,
        description="Generated chunks, keyed by a hash of everything that changes their "
        "audio: a folder, or an s3://bucket/prefix shared by every machine. Reruns and edits "
        "reuse them.",
    )
    s3_endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint for s3:// locations (R2, MinIO); unset: AWS."
    )
    endpoint_limit: str = Field(
        "runpod-endpoint",
        description="Prefect global concurrency limit shared by every run "
        "that sends jobs to the RunPod endpoint (created or resized at flow start).",
    )
    gpu_price_per_hour: float = Field(
        1.10,
        ge=0,
        description="What a GPU worker costs per hour, for the run summary's "
        "estimate (RunPod serverless, 24 GB class, 2026).",
    )
    chunk_retries: int = Field(
        4,
        ge=0,
        le=20,
        description="Times a chunk is retried after a transient failure (throttling, a "
        "5xx, a timeout, a worker out of memory, corrupt audio) before it counts as failed.",
    )
    chunk_retry_delays: tuple[float, ...] = Field(
        (2.0, 10.0, 30.0, 60.0),
        min_length=1,
        description="Seconds before each retry (the last repeats), each "
        "varied by up to ±50 % so retries do not arrive together.",
    )
    local_workers: int = Field(
        2,
        ge=1,
        le=64,
        description="Chunks generated at once by the "
        "local backend; each holds its own engine and Whisper model. "
        "Match it to the CPU cores.",
    )
    voice_library: str = Field(
        str(Path.home() / ".local" / "share" / "narrator" / "voices"),
        description="The voice library (`narrator voices`): a folder or s3://bucket/prefix. "
        "Flows take its voices by name.",
    )
    output_lock_seconds: float = Field(
        6 * 3600.0,
        gt=0,
        description="How long a run's lock on an S3 output folder lasts if the run dies "
        "without releasing it (a local folder's lock ends with its process).",
    )
    max_chapter_bytes: int = Field(
        5_000_000, ge=1, description="Largest chapter file accepted (about 800,000 words)."
    )

    # ElevenLabs (backend = elevenlabs)
    elevenlabs_api_key: SecretStr | None = Field(
        None,
        description="API key. Unset: read from the Prefect Secret block named by "
        "elevenlabs_api_key_block.",
    )
    elevenlabs_api_key_block: str = Field(
        "elevenlabs-api-key",
        description="Prefect Secret block holding the API key when "
        "NARRATOR_ELEVENLABS_API_KEY is unset.",
    )
    elevenlabs_base_url: str = Field(
        "https://api.elevenlabs.io",
        description="The API's base URL (a proxy, or a local stand-in for tests).",
    )
    elevenlabs_model: str = Field(
        "eleven_multilingual_v2",
        description="model_id: eleven_multilingual_v2, eleven_flash_v2_5, ...",
    )
    elevenlabs_output_format: Literal["pcm_24000", "mp3_44100_128"] = Field(
        "pcm_24000",
        description="pcm_24000: no lossy round trip; mp3_44100_128 (decoded here with PyAV) "
        "for a plan that does not offer PCM.",
    )
    elevenlabs_concurrency: int = Field(
        5,
        ge=1,
        le=64,
        description="Requests in flight until the API's answers tell the plan's own limit "
        "(its maximum-concurrent-requests header): Creator 5, Pro 10, Scale 15.",
    )
    elevenlabs_limit: str = Field(
        "elevenlabs",
        description="Prefect global concurrency limit shared by every process that sends "
        "requests to the ElevenLabs account, sized to the plan's concurrency (created or "
        "resized at flow start and when an answer tells a new plan); empty: none, each "
        "process keeps to its own window.",
    )
    elevenlabs_stability: float = Field(0.5, ge=0, le=1, description="voice_settings.stability")
    elevenlabs_similarity_boost: float = Field(
        0.75, ge=0, le=1, description="voice_settings.similarity_boost"
    )
    elevenlabs_style: float = Field(0.0, ge=0, le=1, description="voice_settings.style")
    elevenlabs_speaker_boost: bool = Field(True, description="voice_settings.use_speaker_boost")
    elevenlabs_timeout: float = Field(
        180.0, gt=0, description="Seconds one request may take (a 60 s chunk takes 30-60 s)."
    )

    # RunPod (backend = runpod)
    runpod_endpoint_id: str | None = Field(
        None, description="The endpoint's id, as in https://api.runpod.ai/v2/<id>/run."
    )
    runpod_api_key: SecretStr | None = Field(
        None,
        description="API key. Unset: read from the Prefect Secret block named by "
        "runpod_api_key_block.",
    )
    runpod_api_key_block: str = Field(
        "runpod-api-key",
        description="Prefect Secret block holding the API key when "
        "NARRATOR_RUNPOD_API_KEY is unset.",
    )
    runpod_base_url: str = Field(
        "https://api.runpod.ai/v2",
        description="The API's base URL (a local endpoint: http://127.0.0.1:8000/v2).",
    )
    runpod_concurrency: int = Field(
        20,
        ge=1,
        le=1000,
        description="Jobs in flight at once; match it to the endpoint's "
        "max workers (plus a few to keep its queue fed).",
    )
    runpod_identity: str | None = Field(
        None,
        description="What the endpoint's workers run (image tag, model version): part "
        "of every cache key, so change it when you deploy a new image. Unset: "
        "runpod:<endpoint id>.",
    )
    runpod_job_timeout: float = Field(
        900.0, gt=0, description="Seconds to wait for one job before cancelling it and retrying."
    )
