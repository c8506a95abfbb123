"""A dialogue's cast: who speaks with which voice, and how.

A cast file is TOML. The narrator reads untagged prose; each speaker reads the lines tagged
with their name (`ALICE: ...` or `[Alice] ...`, see tasks/text/blocks.py):

    [narrator]
    voice = "heart"

    [speakers.Alice]
    voice = "joe"            # a built-in voice, a library voice or a reference clip
    exaggeration = 0.7       # Chatterbox only: emotion intensity
    cfg_weight = 0.4         # Chatterbox only: lower is slower, more deliberate

    [speakers.Guest]
    voice = "guest-voice-id"                             # ElevenLabs: a voice id
    voice_settings = { stability = 0.3, style = 0.6 }    # ElevenLabs only

A role's unset fields come from the run: its voice, then its generation options.
"""

import re
import tomllib
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from gpu_worker.errors import InputError
from gpu_worker.redaction import CredentialFree
from gpu_worker.schema import explain

SpeakerName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=40, pattern=r"^[^\[\]:<>&\n]+$"
    ),
]


class VoiceSettings(BaseModel):
    """ElevenLabs' voice_settings for one role (unset: the run's NARRATOR_ELEVENLABS_*)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stability: float | None = Field(None, ge=0.0, le=1.0)
    similarity_boost: float | None = Field(None, ge=0.0, le=1.0)
    style: float | None = Field(None, ge=0.0, le=1.0)
    use_speaker_boost: bool | None = None


class Role(BaseModel):
    """One voice in the cast."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    voice: CredentialFree | None = Field(
        None,
        description="Built-in voice, library voice or reference clip: a public URL, an s3:// "
        "URI or a path, never a presigned URL (default: the run's).",
    )
    exaggeration: float | None = Field(None, ge=0.0, le=2.0, description="Emotion intensity.")
    cfg_weight: float | None = Field(None, ge=0.0, le=1.0, description="Guidance weight.")
    temperature: float | None = Field(None, gt=0.0, le=2.0, description="Sampling temperature.")
    speed: float | None = Field(
        None, ge=0.5, le=2.0, description="Pace of this voice's speech (default: the run's)."
    )
    voice_settings: VoiceSettings | None = Field(
        None, description="ElevenLabs only: this voice's stability, similarity_boost, style."
    )


class Cast(BaseModel):
    """The narrator and the speakers of a dialogue."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    narrator: Role = Field(default_factory=Role, description="Reads untagged prose.")
    speakers: dict[SpeakerName, Role] = Field(
        default_factory=dict, description="Speaker name (as tagged in the text) -> role."
    )

    def role(self, speaker: str | None) -> Role:
        return self.narrator if speaker is None else self.speakers[speaker]


def read_cast(data: str, name: str) -> Cast:
    """A cast from TOML text; a clear InputError naming `name` when it is not one."""
    try:
        cast = Cast.model_validate(tomllib.loads(data))
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{name}: not valid TOML ({e})") from e
    except ValidationError as e:
        raise InputError(f"{name}: {explain(e)}") from e
    folded = [s.casefold() for s in cast.speakers]
    if len(set(folded)) != len(folded):
        raise InputError(f"{name}: two speakers differ only in case")
    if not all(re.search(r"\w", s) for s in cast.speakers):
        raise InputError(f"{name}: a speaker's name needs a letter or digit")
    return cast
