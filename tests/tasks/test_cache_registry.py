"""Entries the cache could not store are remembered per task, so two identical chunks (one
key) whose writes both failed both keep their audio (tasks/cache.py)."""

import os
from pathlib import Path

from tasks.cache import (
    UNFINISHED_AFTER_S,
    not_written,
    sweep_unfinished,
    unwritten,
    why_not_written,
)


def test_two_tasks_with_one_key_are_each_answered() -> None:
    why_not_written("key-shared", "disk full at /cache: free some space there, then rerun")
    not_written("key-shared")
    not_written("key-shared")
    assert unwritten("key-shared") == "disk full at /cache: free some space there, then rerun"
    assert unwritten("key-shared") == "disk full at /cache: free some space there, then rerun"
    assert unwritten("key-shared") is None
    assert unwritten("key-never-failed") is None


def test_a_killed_writes_temporary_file_is_swept_and_entries_are_kept(tmp_path: Path) -> None:

    old = tmp_path / ".abc123.x7"
    fresh = tmp_path / ".def456.y8"  # perhaps being written now
    entry = tmp_path / "abc123"
    for path in (old, fresh, entry):
        path.write_bytes(b"x")
    long_ago = old.stat().st_mtime - UNFINISHED_AFTER_S - 60
    os.utime(old, (long_ago, long_ago))
    os.utime(entry, (long_ago, long_ago))
    sweep_unfinished(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".def456.y8", "abc123"]
