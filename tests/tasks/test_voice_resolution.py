"""A voice name becomes request fields in one place: a library voice, a clip, or built-in."""

from pathlib import Path

from gpu_worker.schema import GenerationParams
from tasks.cast import read_cast
from tasks.text import ChunkingOptions, make_chunks
from tasks.voice_library import VoiceLibrary
from tasks.voice_resolution import chunk_requests, resolve
from tests.tasks.test_cast import CAST


def test_clips_and_names_are_told_apart_without_a_library() -> None:
    assert resolve(None) == {"voice": None, "audio_prompt_url": None}
    assert resolve("heart") == {"voice": "heart", "audio_prompt_url": None}
    for clip in ("https://cdn.example.com/zen.wav", "s3://b/zen.wav", "voices/zen.wav", "z.flac"):
        assert resolve(clip) == {"voice": None, "audio_prompt_url": clip}


def test_each_chunk_is_read_by_its_speaker_with_its_roles_settings(tmp_path: Path) -> None:
    text = "The ferry left at dawn.\n\nTOM: Hold on to the rail.\n\nThe water was calm.\n"
    chunks = make_chunks(text, ChunkingOptions(), ["Tom"])
    library = VoiceLibrary(str(tmp_path / "empty-library"))
    requests = chunk_requests(
        chunks, None, GenerationParams(cfg_weight=0.3), read_cast(CAST, "c.toml"), library
    )
    pairs = zip(chunks, requests, strict=True)
    read = [(c.speaker, r.voice, r.exaggeration, r.cfg_weight) for c, r in pairs]
    default = GenerationParams().exaggeration
    assert read == [
        (None, "heart", default, 0.3),
        ("Tom", "joe", 0.7, 0.3),  # the role's own setting over the run's, the rest the run's
        (None, "heart", default, 0.3),
    ]
    assert [r.text for r in requests] == [c.text for c in chunks]


def test_neighbours_are_the_same_speakers_chunks_only(tmp_path: Path) -> None:
    text = "The ferry left at dawn.\n\nThe gulls followed.\n\nTOM: Hold on.\n\nThe sea was calm.\n"
    chunks = make_chunks(text, ChunkingOptions(min_chars=5, target_chars=40), ["Tom"])
    assert [c.speaker for c in chunks] == [None, None, "Tom", None]
    library = VoiceLibrary(str(tmp_path / "empty-library"))
    cast = read_cast(CAST, "c.toml")
    plain = chunk_requests(chunks, None, GenerationParams(), cast, library)
    near = chunk_requests(chunks, None, GenerationParams(), cast, library, neighbours=True)
    assert all(r.previous_text is None and r.next_text is None for r in plain)
    assert [(r.previous_text, r.next_text) for r in near] == [
        (None, chunks[1].text),
        (chunks[0].text, None),  # the next chunk is Tom's
        (None, None),
        (None, None),  # the chunk before is Tom's
    ]
