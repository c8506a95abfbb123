"""A dialogue narrated offline: the bundled sample, its cast, two audibly different voices."""

import itertools
import json
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from flows.chapter import NarrationOptions, narrate_chapter
from gpu_worker.schema import GenerationParams
from tasks.cast import Cast, Role, read_cast
from tests.conftest import local_backend

pytestmark = pytest.mark.usefixtures("prefect_server")

SAMPLE = Path(__file__).parents[2] / "samples" / "dialogue" / "the-ferry.md"
CAST = SAMPLE.with_suffix(".cast.toml")
FAST = NarrationOptions(generation=GenerationParams(n_candidates=1), formats=[])
SPEAKERS = [None, None, "Mara", "Tom", "Mara", None, "Tom", "Mara", "Tom", None]


def median_pitch(audio: np.ndarray, rate: int) -> float:
    f0 = librosa.yin(audio.astype(np.float32), fmin=60, fmax=400, sr=rate)
    return float(np.median(f0))


def test_the_bundled_dialogue_gives_each_speaker_their_voice_and_recasting_one_regenerates_only_theirs(  # noqa: E501
    tmp_path: Path, cache: Path
) -> None:
    backend = local_backend()
    cast = read_cast(CAST.read_text(), str(CAST))
    out = tmp_path / "out"

    before = backend.requests
    result = narrate_chapter(str(SAMPLE), str(out), None, FAST, cast)
    assert backend.requests - before == len(SPEAKERS)
    meta = json.loads((out / "metadata.json").read_text())
    chunks = meta["chunks"]
    assert [c["speaker"] for c in chunks] == SPEAKERS
    voices = {"Mara": "heart", "Tom": "joe", None: "heart"}
    assert [c["voice"] for c in chunks] == [voices[s] for s in SPEAKERS]
    assert all(c["passed"] for c in chunks)  # Whisper heard every line as written
    # a chunk ends at every change of speaker, with the turn pause after it
    for here, after in itertools.pairwise(chunks):
        if here["speaker"] != after["speaker"] and not here["heading"]:
            assert here["break_after"] == "turn"
    segments = json.loads((out / "segments.json").read_text())
    assert [s["speaker"] for s in segments] == SPEAKERS
    srt, vtt = (out / "the-ferry.srt").read_text(), (out / "the-ferry.vtt").read_text()
    assert "Tom: It leaves when the captain" in srt and "<v Mara>Are we late?" in vtt

    # Tom (joe) and Mara (heart) sound different: joe's voice is far lower
    audio, rate = sf.read(result.audio)
    pitch: dict[str, list[float]] = {"Mara": [], "Tom": []}
    for c in chunks:
        if c["speaker"]:
            clip = audio[int(c["start"] * rate) : int(c["end"] * rate)]
            pitch[c["speaker"]].append(median_pitch(clip, rate))
    mara, tom = np.mean(pitch["Mara"]), np.mean(pitch["Tom"])
    assert tom < 0.7 * mara, (tom, mara)

    # Recast Tom: only his three chunks are generated again
    recast = Cast(narrator=cast.narrator, speakers={**cast.speakers, "Tom": Role(voice="heart")})
    before = backend.requests
    again = narrate_chapter(str(SAMPLE), str(out), None, FAST, recast)
    assert backend.requests - before == SPEAKERS.count("Tom")
    assert again.cache_hits == len(SPEAKERS) - SPEAKERS.count("Tom")
    rechunks = json.loads((out / "metadata.json").read_text())["chunks"]
    regenerated = [c["speaker"] for c in rechunks if not c["cache_hit"]]
    assert regenerated == ["Tom"] * 3 and {c["voice"] for c in rechunks} == {"heart"}
