"""A run's choices (NarrationOptions): how to chunk, generate, check, join and deliver.

They are the flows' parameters (the Prefect UI shows a form for them); every field has a
default that works. Settings that describe the machine (folders, workers, endpoints) are
not here but in tasks/settings.py.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gpu_worker.schema import GenerationParams
from tasks.audio import AudioOptions
from tasks.encode import Format
from tasks.loudness import LoudnessOptions
from tasks.text import ChunkingOptions


class NarrationOptions(BaseModel):
    """Per-run choices. Every field has a default that works; the Prefect UI shows these."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    generation: GenerationParams = Field(default_factory=GenerationParams)
    chunking: ChunkingOptions = Field(default_factory=ChunkingOptions)
    audio: AudioOptions = Field(default_factory=AudioOptions)
    loudness: LoudnessOptions = Field(default_factory=LoudnessOptions)
    formats: list[Format] = Field(
        ["mp3", "m4b"],
        description="Delivery formats made "
        "beside the WAV: mp3 (44.1 kHz, 192 kbps, as ACX asks) and "
        "m4b (AAC, with a chapter marker at each heading).",
    )
    validate_chapter: bool = Field(
        True,
        description="Transcribe the finished chapter, "
        "compare it with the text and flag chunks that went wrong "
        "(validation.json and a Prefect artifact).",
    )
    on_low_score: Literal["flag", "fail"] = Field(
        "flag",
        description="When a chunk's best candidate stays below whisper_threshold "
        "after every retry: flag it in the metadata and keep it, or fail the chapter.",
    )
    refresh_cache: bool = Field(
        False,
        description="Regenerate every chunk even if an "
        "identical one is cached (the new audio replaces it).",
    )

    @field_validator("generation")
    @classmethod
    def _english_text(cls, generation: GenerationParams) -> GenerationParams:
        """A chapter is prepared for speech (numbers, dates, abbreviations) and its takes
        scored by English rules: another language would be read with them ("1999" as
        English words inside French), so it is refused rather than read wrongly."""
        if generation.language_id.lower() not in ("en", "en-us", "en-gb"):
            raise ValueError(
                f"language_id {generation.language_id!r}: narrator prepares and checks "
                "text in English only (numbers, dates and abbreviations would be read in "
                "English); set language_id to en"
            )
        return generation
