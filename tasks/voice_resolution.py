"""How a voice name becomes a chunk request's voice: library clip, reference clip or built-in.

    resolve("mara", library)          {"voice": None, "audio_prompt_url": "<library>/mara.wav"}
    resolve("https://.../zen.wav")    {"voice": None, "audio_prompt_url": "https://.../zen.wav"}
    resolve("heart")                  {"voice": "heart", "audio_prompt_url": None}

`chunk_requests` applies it to every chunk of a chapter, in its speaker's voice and with
its role's settings (tasks/cast.py), the run's voice where the role names none.
"""

from gpu_worker.schema import GenerateRequest, GenerationParams
from tasks.cast import Cast
from tasks.text import Chunk
from tasks.voice_library import NAME, VoiceLibrary

VoiceFields = dict[str, str | None]  # the request's `voice` and `audio_prompt_url`


def is_clip(voice: str) -> bool:
    """Whether `voice` names a reference clip (a URL, an s3:// URI or a path) rather than a
    voice by name."""
    return "/" in voice or "://" in voice or voice.lower().endswith((".wav", ".flac"))


def resolve(voice: str | None, library: VoiceLibrary | None = None) -> VoiceFields:
    """`voice` as request fields: a library voice's clip when the library has that name,
    else a reference clip, else a built-in voice name (None: the engine's default)."""
    if voice and library and NAME.fullmatch(voice) and library.has(voice):
        return {"voice": None, "audio_prompt_url": library.clip(voice)}
    if voice and is_clip(voice):
        return {"voice": None, "audio_prompt_url": voice}
    return {"voice": voice, "audio_prompt_url": None}


def chunk_requests(
    chunks: list[Chunk],
    voice: str | None,
    generation: GenerationParams,
    cast: Cast | None,
    library: VoiceLibrary,
    neighbours: bool = False,
) -> list[GenerateRequest]:
    """What to ask the backend for each chunk: its text, in its speaker's voice, with its
    role's settings over the run's (each voice is looked up in the library once). With
    `neighbours`, each request also carries the text of the chunks just before and after
    it when the same speaker reads them (for an engine that continues prosody across them)."""
    roles = cast or Cast()
    resolved: dict[str | None, VoiceFields] = {}
    requests = []
    for i, chunk in enumerate(chunks):
        role = roles.role(chunk.speaker)
        name = role.voice or voice
        if name not in resolved:
            resolved[name] = resolve(name, library)
        settings = role.model_dump(exclude={"voice", "speed"}, exclude_none=True)
        if not settings.get("voice_settings"):  # a [x.voice_settings] table left empty
            settings.pop("voice_settings", None)
        fields = {
            **generation.model_dump(),
            **settings,
            **resolved[name],
            "text": chunk.text,
            "respellings": chunk.respellings,
        }
        if neighbours:
            fields["previous_text"] = _same_speaker(chunks, i - 1, chunk.speaker)
            fields["next_text"] = _same_speaker(chunks, i + 1, chunk.speaker)
        requests.append(GenerateRequest(**fields))
    return requests


def _same_speaker(chunks: list[Chunk], i: int, speaker: str | None) -> str | None:
    if 0 <= i < len(chunks) and chunks[i].speaker == speaker:
        return chunks[i].text
    return None
