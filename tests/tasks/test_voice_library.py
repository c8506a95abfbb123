"""The voice library through `narrator voices`: clips checked, cleaned, stored locally or in
S3, and taken by name."""

import hashlib
import io
import json
from pathlib import Path

import boto3
import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from flows.cli import app
from tasks.loudness import integrated_loudness
from tasks.voice_library import VoiceLibrary
from tasks.voice_resolution import resolve
from tests.gpu_worker.test_voices import clip

runner = CliRunner()


def padded(seconds: float, silence: float, rate: int = 44100) -> bytes:
    """A stereo 44.1 kHz clip with `silence` seconds of quiet before and after."""
    samples, _ = sf.read(io.BytesIO(clip(seconds, rate=rate)), dtype="float32")
    pad = np.zeros(int(silence * rate), np.float32)
    mono = np.concatenate([pad, samples, pad])
    buffer = io.BytesIO()
    sf.write(buffer, np.stack([mono, mono], axis=1), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def clipped(seconds: float) -> bytes:
    samples, rate = sf.read(io.BytesIO(clip(seconds, level=0.2)), dtype="float32")
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(samples * 8, -1, 1), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def voices(*args: str, library: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(
        app,
        ["voices", *args],
        env={"NARRATOR_VOICE_LIBRARY": library, "COLUMNS": "300", **(env or {})},
    )
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"RIFF but not really a wave file" * 50, "is not audio this worker can decode"),
        (clip(1.0), "lasts 1.0 s; a voice clip must last 3-60 s"),
        (clip(61.0), "lasts 61.0 s"),
        (clip(5.0, level=0.0), "is silent"),
        (clipped(5.0), "is clipped ("),
        (padded(1.5, silence=2.0), "has 1.7 s of sound once its silence is trimmed"),
    ],
    ids=["not audio", "too short", "too long", "silent", "clipped", "mostly silence"],
)
def test_unusable_clips_are_refused_with_a_reason(tmp_path: Path, data: bytes, reason: str) -> None:
    (tmp_path / "take.wav").write_bytes(data)
    code, said = voices("add", "mara", str(tmp_path / "take.wav"), library=str(tmp_path / "lib"))
    assert code == 1 and said.startswith("narrator: ") and reason in said, said
    assert not (tmp_path / "lib").exists() or not any((tmp_path / "lib").iterdir())


@pytest.mark.parametrize(
    "name", ["../mara", "a/b", ".hidden", "x" * 41, "mara.wav", "mara\n", "mara\r\n"]
)
def test_names_cannot_be_paths(tmp_path: Path, name: str) -> None:
    (tmp_path / "take.wav").write_bytes(clip(5.0))
    code, said = voices("add", name, str(tmp_path / "take.wav"), library=str(tmp_path / "lib"))
    assert code == 1 and "no paths" in said, said


def round_trip(library: str, env: dict[str, str], take: Path) -> VoiceLibrary:
    take.write_bytes(padded(8.0, silence=1.5))
    code, said = voices("add", "mara", str(take), library=library, env=env)
    assert code == 0 and said.startswith("added mara"), said
    code, said = voices("add", "mara", str(take), library=library, env=env)
    assert code == 1 and "already in the library" in said
    code, listed = voices("list", library=library, env=env)
    assert code == 0 and "mara 8.2 s -20.0 LUFS" in listed, listed
    assert "built in (embedded engine): heart, joe" in listed
    code, shown = voices("show", "mara", library=library, env=env)
    meta = json.loads(shown)
    assert meta["sample_rate"] == 24000 and meta["trimmed_seconds"] == pytest.approx(2.8, abs=0.05)
    return VoiceLibrary(library, env.get("NARRATOR_S3_ENDPOINT_URL"))


def test_a_good_clip_round_trips_through_a_local_library(tmp_path: Path) -> None:
    library = round_trip(str(tmp_path / "lib"), {}, tmp_path / "take.wav")
    wav = (tmp_path / "lib" / "mara.wav").read_bytes()
    samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    assert rate == 24000 and samples.ndim == 1  # mono at the engines' rate
    assert integrated_loudness(samples, rate) == pytest.approx(-20.0, abs=0.5)
    assert library.get("mara").sha256 == hashlib.sha256(wav).hexdigest()
    # a run's voice "mara" becomes the clip; other names stay built-in voices
    assert resolve("mara", library) == {"voice": None, "audio_prompt_url": library.clip("mara")}
    assert resolve("joe", library) == {"voice": "joe", "audio_prompt_url": None}
    assert resolve("mara\n", library)["audio_prompt_url"] is None  # the whole name, or none
    code, said = voices("remove", "mara", library=str(tmp_path / "lib"))
    assert code == 0 and list((tmp_path / "lib").iterdir()) == []
    code, said = voices("show", "mara", library=str(tmp_path / "lib"))
    assert code == 1 and "no voice 'mara' in the library" in said


def test_a_good_clip_round_trips_through_s3(tmp_path: Path, s3: str) -> None:
    boto3.client("s3", endpoint_url=s3).create_bucket(Bucket="studio")
    env = {"NARRATOR_S3_ENDPOINT_URL": s3}
    library = round_trip("s3://studio/voices", env, tmp_path / "take.wav")
    keys = boto3.client("s3", endpoint_url=s3).list_objects_v2(Bucket="studio")["Contents"]
    assert sorted(k["Key"] for k in keys) == ["voices/mara.json", "voices/mara.wav"]
    assert resolve("mara", library)["audio_prompt_url"] == "s3://studio/voices/mara.wav"
    code, _ = voices("remove", "mara", library="s3://studio/voices", env=env)
    assert code == 0 and "Contents" not in boto3.client("s3", endpoint_url=s3).list_objects_v2(
        Bucket="studio"
    )


@pytest.mark.usefixtures("prefect_server")
def test_a_run_takes_a_library_voice_by_name(tmp_path: Path) -> None:
    """The embedded engines do not clone, so the run stops before generating, having
    found the clip in the library and checked it."""
    library, env = str(tmp_path / "lib"), {"NARRATOR_CACHE_DIR": str(tmp_path / "cache")}
    (tmp_path / "take.wav").write_bytes(clip(6.0))
    assert voices("add", "mara", str(tmp_path / "take.wav"), library=library)[0] == 0
    (tmp_path / "chapter.md").write_text("The keeper waved from the rocks.\n")
    result = runner.invoke(
        app,
        ["run", str(tmp_path / "chapter.md"), "--out", str(tmp_path / "out"), "--voice", "mara"],
        env={"NARRATOR_VOICE_LIBRARY": library, "COLUMNS": "400", **env},
    )
    said = " ".join(result.output.split())
    assert result.exit_code == 1
    assert f"cannot clone '{tmp_path / 'lib' / 'mara.wav'}'" in said, said


@pytest.mark.parametrize(
    "damage",
    [b"{not json", b'{"name": "mara"}', b"[]", b"\xff\xfe garbage"],
    ids=["not JSON", "fields missing", "not an object", "not text"],
)
def test_a_damaged_description_is_one_line_naming_the_file(tmp_path: Path, damage: bytes) -> None:
    library = str(tmp_path / "lib")
    (tmp_path / "take.wav").write_bytes(clip(6.0))
    assert voices("add", "mara", str(tmp_path / "take.wav"), library=library)[0] == 0
    meta = tmp_path / "lib" / "mara.json"
    meta.write_bytes(damage)
    for command in (("list",), ("show", "mara"), ("add", "mara", str(tmp_path / "take.wav"))):
        code, said = voices(*command, library=library)
        assert code == 1, (command, said)
        assert said.startswith(f"narrator: {meta} is not a voice description"), said
        assert "Traceback" not in said
