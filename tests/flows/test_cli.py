"""The `narrator` command, as a user runs it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app

runner = CliRunner()
CHAPTER = "# Arrival\n\nThe boat reached the island at 6:30 p.m. The keeper waved.\n"


def test_help_explains_every_option() -> None:
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0 and "run" in top.output
    assert {"review", "redo"} <= set(top.output.split())
    help_text = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200"}).output
    for option in (
        "--out",
        "--voice",
        "--candidates",
        "--threshold",
        "--max-retries",
        "--seed",
        "--accept-score",
        "--target-chars",
        "--max-chars",
        "--sentence-pause",
        "--paragraph-pause",
        "--section-pause",
        "--on-low-score",
        "--refresh",
        "--loudness",
        "--formats",
        "--no-validate",
        "--workers",
        "--cache-dir",
        "--verbose",
    ):
        assert option in help_text, option
    assert "Candidates per round." in help_text and "[default: 3]" in help_text


def test_a_fresh_process_narrates_a_chapter(tmp_path: Path) -> None:
    chapter = tmp_path / "arrival.md"
    chapter.write_text(CHAPTER)
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "run",
            str(chapter),
            "--out",
            str(tmp_path / "out"),
            "-n",
            "3",
            "--accept-score",
            "90",
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "arrival.wav" in done.stdout and "2 (0 from cache)" in done.stdout
    assert " INFO " not in done.stderr  # quiet unless --verbose
    assert len(list((tmp_path / "cache").iterdir())) == 2  # --cache-dir: both chunks there
    files = sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith("."))
    assert files == [
        "arrival.m4b",
        "arrival.mp3",
        "arrival.srt",
        "arrival.vtt",
        "arrival.wav",
        "manifest.json",
        "metadata.json",
        "segments.json",
        "validation.json",
    ]
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert meta["options"]["generation"]["n_candidates"] == 3
    assert meta["options"]["generation"]["accept_score"] == 90
    # early acceptance: a round stops at its first candidate that scores 90 and passes
    for chunk in meta["chunks"]:
        made = len(chunk["candidates"])
        assert made + chunk["candidates_skipped"] == 3 * (chunk["retries"] + 1), chunk
    skipped = sum(chunk["candidates_skipped"] for chunk in meta["chunks"])
    assert skipped == meta["totals"]["candidates_skipped"] > 0

    # a redo of its second chunk, in a fresh process too
    redo = [sys.executable, "-m", "flows.cli", "redo", str(tmp_path / "out"), "--chunks", "1"]
    redo += ["--cache-dir", str(tmp_path / "cache")]
    done = subprocess.run(redo, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "2 (1 from cache)" in done.stdout
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert [c["take"] for c in meta["chunks"]] == [0, 1]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["redo", "out"], "nothing to do: give --chunks, --take, --keep or --release"),
        (["redo", "out", "--chunks", "1-b"], "--chunks '1-b': give chunk numbers like 12,40"),
        (["redo", "out", "--take", "3"], "--take '3': give CHUNK=TAKE, e.g. --take 12=1"),
        (["review", "nowhere"], "nowhere: not a narrated chapter to review (no manifest.json"),
    ],
)
def test_review_commands_refuse_bad_input_in_one_line(
    arguments: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, arguments, env={"COLUMNS": "300"})
    assert result.exit_code == 1
    assert result.output.startswith("narrator: ") and message in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("faults", "message"),
    [
        ('{"rate": 2}', "rate: Input should be less than or equal to 1 (got 2)"),
        ('{"kinds": ["gremlins"]}', "kinds.0: Input should be 'http_500'"),
        ('{"rate": ', "Invalid JSON"),
    ],
)
def test_a_bad_fault_drill_is_refused_with_the_field_named(faults: str, message: str) -> None:
    result = runner.invoke(app, ["endpoint", "--faults", faults], env={"COLUMNS": "300"})
    assert result.exit_code == 1
    assert result.output.startswith("narrator: --faults: ") and message in result.output
