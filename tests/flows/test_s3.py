"""Inputs, outputs and the chunk cache in S3 (a moto server on 127.0.0.1)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from flows.chapter import NarrationOptions, narrate_chapter
from gpu_worker.schema import GenerationParams

FAST = NarrationOptions(
    generation=GenerationParams(n_candidates=1), validate_chapter=False, formats=["mp3"]
)
CHAPTER = "# Harbour Lights\n\nThe keeper climbed the stairs at dusk. The beam swept out.\n"


@pytest.mark.usefixtures("prefect_server")
def test_a_chapter_from_s3_to_s3_and_a_new_process_reuses_the_s3_cache(
    s3: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    client = boto3.client("s3", endpoint_url=s3)
    for bucket in ("books", "chunk-cache"):
        client.create_bucket(Bucket=bucket)
    client.put_object(Bucket="books", Key="chapters/harbour.md", Body=CHAPTER.encode())
    monkeypatch.setenv("NARRATOR_S3_ENDPOINT_URL", s3)
    monkeypatch.setenv("NARRATOR_CACHE_DIR", "s3://chunk-cache/narrator")

    result = narrate_chapter(
        "s3://books/chapters/harbour.md", "s3://books/audio/harbour", None, FAST
    )
    assert result.audio == "s3://books/audio/harbour/harbour.wav"
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="books", Prefix="audio/")["Contents"]}
    assert {
        "audio/harbour/harbour.wav",
        "audio/harbour/harbour.mp3",
        "audio/harbour/harbour.srt",
        "audio/harbour/metadata.json",
        "audio/harbour/segments.json",
    } <= keys
    cached = client.list_objects_v2(Bucket="chunk-cache", Prefix="narrator/")["KeyCount"]
    assert cached == result.chunks == 2
    metadata = json.loads(
        client.get_object(Bucket="books", Key="audio/harbour/metadata.json")["Body"].read()
    )
    assert metadata["totals"]["cache_hits"] == 0

    env = {
        **os.environ,
        "NARRATOR_CACHE_DIR": "s3://chunk-cache/narrator",
        "NARRATOR_S3_ENDPOINT_URL": s3,
    }
    env.pop("PREFECT_API_URL", None)  # its own temporary Prefect server: nothing shared but S3
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "run",
            "s3://books/chapters/harbour.md",
            "--out",
            "s3://books/audio/again",
            "-n",
            "1",
            "--no-validate",
            "--formats",
            "",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 (2 from cache)" in done.stdout
    again = json.loads(
        client.get_object(Bucket="books", Key="audio/again/metadata.json")["Body"].read()
    )
    assert all(c["cache_hit"] for c in again["chunks"])
