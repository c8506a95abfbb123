"""A chapter's published set: all or nothing, finished after an interruption, one writer at a
time (tasks/outputs.py). Locally on a real folder; on S3 against the moto server, with faults
injected by a proxy in front of it."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from gpu_worker.errors import InputError, NarratorError
from tasks.outputs import JOURNAL, LOCK, MANIFEST, OutputDir, published_problem
from tests.proxy import Answer, TamperingProxy

HOLD_LOCK = """
import sys, time
from tasks.outputs import OutputDir
out = OutputDir(sys.argv[1], sys.argv[2] or None)
print("locked", flush=True)
time.sleep(120)
"""


def stage(out: OutputDir, files: dict[str, str]) -> None:
    for name, text in files.items():
        out.write_text(name, text)


def visible(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in folder.iterdir() if not p.name.startswith(".")}


def run_one(folder: str, files: dict[str, str], endpoint: str | None = None) -> list[str]:
    out = OutputDir(folder, endpoint)
    stage(out, files)
    return out.publish(last="metadata.json")


OLD = {"ch.wav": "old audio", "ch.srt": "old subtitles", "metadata.json": '{"run": 1}'}
NEW = {"ch.wav": "new audio!", "ch.srt": "new subtitles", "metadata.json": '{"run": 2}'}


def test_nothing_is_visible_until_publish_and_then_all_of_it_with_a_manifest(
    tmp_path: Path,
) -> None:
    out = OutputDir(str(tmp_path / "out"))
    stage(out, {"metadata.json": "{}", "a.srt": "1"})
    assert visible(tmp_path / "out") == {}
    published = out.publish(last="metadata.json")
    assert [Path(p).name for p in published] == ["a.srt", "metadata.json", MANIFEST]
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert manifest["files"]["a.srt"]["bytes"] == 1
    assert published_problem(str(tmp_path / "out")) is None
    assert not list((tmp_path / "out").glob(".narrator-staging-*"))


def test_discard_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    run_one(str(tmp_path), OLD)
    before = visible(tmp_path)
    out = OutputDir(str(tmp_path))
    stage(out, NEW)
    out.discard()
    assert visible(tmp_path) == before
    assert published_problem(str(tmp_path)) is None


@pytest.mark.parametrize("name", ["../escape.wav", "sub/dir.wav", ".hidden", "/etc/passwd"])
def test_output_names_cannot_escape_the_folder(tmp_path: Path, name: str) -> None:
    out = OutputDir(str(tmp_path))
    with pytest.raises(InputError, match="plain file name"):
        out.path(name)
    out.discard()


def test_an_output_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        OutputDir(str(tmp_path / "taken"))


def test_a_publish_cut_short_is_seen_by_readers_and_finished_by_the_next_run(
    tmp_path: Path,
) -> None:
    run_one(str(tmp_path), OLD)
    (tmp_path / "ch.srt").unlink()
    (tmp_path / "ch.srt").mkdir()  # a directory in the way: the second move fails
    (tmp_path / "ch.srt" / "x").write_text("in the way")
    out = OutputDir(str(tmp_path))
    stage(out, NEW)
    with pytest.raises(OSError):
        out.publish(last="metadata.json")
    out.discard()
    assert (tmp_path / JOURNAL).exists() and not (tmp_path / MANIFEST).exists()
    assert "cut short" in (published_problem(str(tmp_path)) or "")

    (tmp_path / "ch.srt" / "x").unlink()
    (tmp_path / "ch.srt").rmdir()
    OutputDir(str(tmp_path)).discard()  # the next run opens the folder and finishes it
    assert visible(tmp_path) == {**NEW, MANIFEST: (tmp_path / MANIFEST).read_text()}
    assert published_problem(str(tmp_path)) is None
    assert not (tmp_path / JOURNAL).exists()
    assert not list(tmp_path.glob(".narrator-staging-*"))


def test_a_reader_sees_a_file_replaced_behind_the_manifest(tmp_path: Path) -> None:
    run_one(str(tmp_path), OLD)
    (tmp_path / "ch.wav").write_text("a different length")
    assert published_problem(str(tmp_path)) == "ch.wav is 18 bytes, not 9"
    (tmp_path / "ch.wav").unlink()
    assert published_problem(str(tmp_path)) == "ch.wav is missing"
    (tmp_path / MANIFEST).unlink()
    assert "no manifest.json" in (published_problem(str(tmp_path)) or "")


def test_one_writer_at_a_time_and_a_killed_writer_frees_the_folder(tmp_path: Path) -> None:
    chapter = tmp_path / "chapter"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(chapter), ""], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout and holder.stdout.readline().strip() == "locked"
        with pytest.raises(InputError) as refused:
            OutputDir(str(chapter))
        assert f"another run is writing this chapter (process {holder.pid} on" in str(refused.value)
        assert "--out" in str(refused.value)
        first = OutputDir(str(tmp_path / "other"))  # another chapter is not held up
        first.discard()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    run_one(str(chapter), NEW)  # the kernel released the dead writer's lock
    assert visible(chapter)["ch.wav"] == "new audio!"


def test_two_runs_in_one_process_are_kept_apart_until_the_first_publishes(
    tmp_path: Path,
) -> None:
    first = OutputDir(str(tmp_path))
    with pytest.raises(InputError, match="another run is writing"):
        OutputDir(str(tmp_path))
    stage(first, OLD)
    first.publish(last="metadata.json")
    run_one(str(tmp_path), NEW)
    assert visible(tmp_path)["metadata.json"] == '{"run": 2}'


def test_staging_left_by_a_dead_process_is_swept(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = tmp_path / f".narrator-staging-{socket.gethostname()}-{gone.pid}-abc123"
    stale.mkdir()
    (stale / "chapter.wav").write_bytes(b"half")
    out = OutputDir(str(tmp_path))
    assert not stale.exists() and out.staging.is_dir()
    out.discard()


# S3: the moto server, directly or through a proxy that fails chosen requests


def s3_files(client: Any, prefix: str) -> dict[str, bytes]:
    listed = client.list_objects_v2(Bucket="books", Prefix=prefix).get("Contents", [])
    return {
        o["Key"][len(prefix) :]: client.get_object(Bucket="books", Key=o["Key"])["Body"].read()
        for o in listed
    }


@pytest.fixture
def books(s3: str) -> Any:
    client = boto3.client("s3", endpoint_url=s3)
    client.create_bucket(Bucket="books")
    return client


def faulty(serve: Callable[[Any], str], s3: str, rule: Callable[[Answer], Any]) -> str:
    proxy = TamperingProxy(s3)
    proxy.always(rule)
    return serve(proxy.app)


def test_s3_publish_cut_short_while_uploading_leaves_the_previous_set_whole(
    books: Any, s3: str, serve: Callable[[Any], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    run_one("s3://books/audio/ch", OLD, s3)
    before = s3_files(books, "audio/ch/")
    broken = faulty(
        serve,
        s3,
        lambda a: (
            a.method == "PUT"
            and a.path.endswith("/ch.srt")
            and a.with_body(b"<Error><Code>InternalError</Code></Error>", 500)
        ),
    )
    out = OutputDir("s3://books/audio/ch", broken)
    stage(out, NEW)
    with pytest.raises(NarratorError, match=r"audio/ch/\.narrator-staging-"):
        out.publish(last="metadata.json")
    out.discard()
    assert s3_files(books, "audio/ch/") == before  # old set whole, no staging left behind
    assert published_problem("s3://books/audio/ch", s3) is None


def test_s3_publish_cut_short_while_copying_is_finished_by_the_next_run(
    books: Any, s3: str, serve: Callable[[Any], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    run_one("s3://books/audio/ch", OLD, s3)
    broken = faulty(
        serve,
        s3,
        lambda a: (
            a.method == "PUT"
            and a.path == "/books/audio/ch/metadata.json"
            and a.with_body(b"<Error><Code>InternalError</Code></Error>", 500)
        ),
    )
    out = OutputDir("s3://books/audio/ch", broken)
    stage(out, NEW)
    with pytest.raises(NarratorError):
        out.publish(last="metadata.json")
    out.discard()
    problem = published_problem("s3://books/audio/ch", s3)
    assert problem and "cut short" in problem

    OutputDir("s3://books/audio/ch", s3).discard()  # the next run finishes it first
    files = s3_files(books, "audio/ch/")
    assert {k: v for k, v in files.items() if not k.startswith(".")} == {
        **{k: v.encode() for k, v in NEW.items()},
        MANIFEST: files[MANIFEST],
    }
    assert [k for k in files if k.startswith(".")] == []  # journal, staging and lock gone
    assert published_problem("s3://books/audio/ch", s3) is None


def test_s3_lock_refuses_a_second_writer_and_expires_or_frees_with_a_dead_owner(
    books: Any, s3: str
) -> None:
    first = OutputDir("s3://books/audio/ch", s3)
    with pytest.raises(InputError) as refused:
        OutputDir("s3://books/audio/ch", s3)
    assert f"process {os.getpid()} on" in str(refused.value)
    assert "delete s3://books/audio/ch/.narrator.lock to free it now" in str(refused.value)
    stage(first, OLD)
    first.publish(last="metadata.json")
    assert LOCK not in s3_files(books, "audio/ch/")

    short = OutputDir("s3://books/audio/ch", s3, lock_seconds=0.5)  # a run that dies
    time.sleep(0.6)
    taken = OutputDir("s3://books/audio/ch", s3)  # expired: taken over
    short.discard()  # the run that lost its lock does not remove the new holder's
    with pytest.raises(InputError, match="another run"):
        OutputDir("s3://books/audio/ch", s3)
    taken.discard()

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    owner = {"host": socket.gethostname(), "pid": gone.pid, "since": "x", "expires": 4e9}
    books.put_object(Bucket="books", Key="audio/ch/.narrator.lock", Body=json.dumps(owner))
    OutputDir("s3://books/audio/ch", s3).discard()  # its process is gone: taken over at once


def test_a_folder_that_cannot_be_opened_releases_its_lock(tmp_path: Path) -> None:
    (tmp_path / JOURNAL).write_text("not a journal")
    with pytest.raises(InputError, match="not a publish journal; delete it and rerun"):
        OutputDir(str(tmp_path))
    (tmp_path / JOURNAL).unlink()  # as the message says: the same process may run again
    run_one(str(tmp_path), NEW)
    assert visible(tmp_path)["ch.wav"] == "new audio!"
