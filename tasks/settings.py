"""Orchestrator settings: where things live and how much runs at once.

Read once, from `NARRATOR_*` environment variables (or a `.env` file), at the entry point —
the flow's first line, or the CLI — and passed down. Per-run choices (voice, candidates,
pauses) are flow parameters instead: see `flows.chapter.NarrationOptions`.
"""

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "narrator" / "chunks"


class NarratorSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="NARRATOR_", env_file=".env", extra="ignore", frozen=True
    )

    backend: Literal["local"] = Field(
        "local",
        description="Where chunks are generated. local: the worker code in this "
        "process, on the CPU.",
    )
    cache_dir: Path = Field(
        default_factory=_default_cache_dir,
        description="Generated "
        "chunks, keyed by a hash of everything that changes their audio. "
        "Reruns and edits reuse them.",
    )
    local_workers: int = Field(
        2,
        ge=1,
        le=64,
        description="Chunks generated at once by the "
        "local backend; each holds its own engine and Whisper model. "
        "Match it to the CPU cores.",
    )
    max_chapter_bytes: int = Field(
        5_000_000, ge=1, description="Largest chapter file accepted (about 800,000 words)."
    )
