import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gpu_worker.errors import InputError
from tasks.storage import OutputDir


def test_nothing_is_visible_until_publish(tmp_path: Path) -> None:
    out = OutputDir(str(tmp_path / "out"))
    out.write_text("metadata.json", "{}")
    out.write_text("a.srt", "1")
    assert [p.name for p in (tmp_path / "out").iterdir()] == [out.staging.name]
    published = out.publish(last="metadata.json")
    assert [Path(p).name for p in published] == ["a.srt", "metadata.json"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.srt", "metadata.json"]


def test_discard_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "old.wav").write_bytes(b"old")
    out = OutputDir(str(tmp_path))
    out.path("old.wav").write_bytes(b"new, but the run failed")
    out.discard()
    assert [p.name for p in tmp_path.iterdir()] == ["old.wav"]
    assert (tmp_path / "old.wav").read_bytes() == b"old"


@pytest.mark.parametrize("name", ["../escape.wav", "sub/dir.wav", ".hidden", "/etc/passwd"])
def test_output_names_cannot_escape_the_folder(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputError, match="plain file name"):
        OutputDir(str(tmp_path)).path(name)


def test_an_output_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        OutputDir(str(tmp_path / "taken"))


def test_staging_left_by_a_dead_process_is_swept_and_a_live_ones_kept(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()
    stale = tmp_path / f".narrator-staging-{host}-{gone.pid}-abc123"
    live = tmp_path / f".narrator-staging-{host}-{os.getppid()}-def456"
    for folder in (stale, live):
        folder.mkdir()
        (folder / "chapter.wav").write_bytes(b"half")
    out = OutputDir(str(tmp_path))
    assert not stale.exists() and live.is_dir() and out.staging.is_dir()
    out.discard()
