"""Entries the cache could not store are remembered per task, so two identical chunks (one
key) whose writes both failed both keep their audio (tasks/cache.py)."""

from tasks.cache import not_written, unwritten, why_not_written


def test_two_tasks_with_one_key_are_each_answered() -> None:
    why_not_written("key-shared", "disk full at /cache: free some space there, then rerun")
    not_written("key-shared")
    not_written("key-shared")
    assert unwritten("key-shared") == "disk full at /cache: free some space there, then rerun"
    assert unwritten("key-shared") == "disk full at /cache: free some space there, then rerun"
    assert unwritten("key-shared") is None
    assert unwritten("key-never-failed") is None
