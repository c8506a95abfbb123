"""The RunPod handler, through the runpod SDK's own local runner."""

import json
import os
import subprocess
import sys
from pathlib import Path

import soundfile as sf

from gpu_worker.best_of_n import BestOfN
from gpu_worker.handler import handle

ROOT = Path(__file__).parents[2]


def run_handler(job: dict, keep: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """The SDK's local runner on `job`, keeping audio in `keep`, with NARRATOR_* `settings`."""
    env = {**os.environ, "NARRATOR_KEEP_AUDIO_DIR": str(keep)}
    env.update({f"NARRATOR_{name.upper()}": value for name, value in settings.items()})
    return subprocess.run(
        [sys.executable, "-m", "gpu_worker.handler", "--test_input", json.dumps(job)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_sdk_test_runner_exits_0_with_audio_that_decodes(tmp_path: Path) -> None:
    done = run_handler(
        {"input": {"text": "The keeper lit the lamp at dusk.", "n_candidates": 1}}, tmp_path
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert "completed successfully" in done.stdout
    assert "'audio_base64': 'UklGR" in done.stdout  # a RIFF/WAVE header, base64
    info = sf.info(tmp_path / "local_test.wav")
    assert (info.samplerate, info.channels) == (24000, 1) and 1.0 < info.duration < 6.0


def test_the_shipped_test_input_runs(tmp_path: Path) -> None:
    job = json.loads((ROOT / "gpu_worker" / "test_input.json").read_text())
    job["input"]["n_candidates"] = 1  # the file asks for 3; one is enough to prove it runs
    assert run_handler(job, tmp_path).returncode == 0


def test_bad_input_fails_the_job_naming_the_field(worker: BestOfN, tmp_path: Path) -> None:
    answer = handle({"id": "j1", "input": {"text": "hi", "temperature": 0}}, worker)
    assert json.loads(answer["error"]) == {
        "kind": "input",
        "code": "invalid_input",
        "message": "invalid request: temperature: Input should be greater than 0 (got 0)",
    }
    missing = json.loads(handle({"id": "j2"}, worker)["error"])
    assert missing["kind"] == "input" and missing["message"].startswith("invalid request: input:")
    done = run_handler({"input": {"text": "hi", "n_candidates": 99}}, tmp_path)
    assert done.returncode == 1
    assert "n_candidates: Input should be less than or equal to 10" in done.stdout


def test_an_english_only_whisper_refuses_other_languages_before_any_take(
    worker: BestOfN,
) -> None:
    """tiny.en hears German as English: every take would fail every round. The job fails at
    once, naming the model and the fix, and no candidate is made."""
    made: list[list[int]] = []
    synthesize = worker.engine.synthesize_batch

    def counted(request, seeds):  # type: ignore[no-untyped-def]
        made.append(seeds)
        return synthesize(request, seeds)

    worker.engine.synthesize_batch = counted  # type: ignore[method-assign]
    try:
        answer = handle(
            {"id": "de", "input": {"text": "Guten Morgen.", "language_id": "de"}}, worker
        )
        english_job = {"text": "Good morning.", "language_id": "en-GB", "n_candidates": 1}
        english = handle({"id": "en", "input": english_job}, worker)
    finally:
        del worker.engine.synthesize_batch
    error = json.loads(answer["error"])
    assert error["kind"] == "input"
    assert "hears English only" in error["message"] and "NARRATOR_WHISPER_MODEL" in error["message"]
    assert "error" not in english and english["passed"]
    assert len(made) == 1  # the English job's one round; none for German


def test_a_keep_audio_folder_that_cannot_be_written_stops_the_worker_at_start(
    tmp_path: Path,
) -> None:
    """Found at start in one line, before the models load, not at the first job."""
    blocker = tmp_path / "volume"
    blocker.write_text("a file where the folder should be")
    done = run_handler({"input": {"text": "Hello.", "n_candidates": 1}}, blocker / "keep")
    assert done.returncode != 0
    assert "the worker cannot start: NARRATOR_KEEP_AUDIO_DIR" in done.stderr
    assert "is not writable" in done.stderr and "Traceback" not in done.stderr


def test_audio_that_cannot_be_kept_does_not_fail_its_job(worker: BestOfN, tmp_path: Path) -> None:
    gone = tmp_path / "keep"
    gone.write_text("not a folder")  # every write under it fails
    answer = handle(
        {"id": "k1", "input": {"text": "Hello there.", "n_candidates": 1}}, worker, gone
    )
    assert "error" not in answer and answer["audio_base64"].startswith("UklGR")


def test_a_whisper_model_path_that_does_not_exist_stops_the_worker_at_start(
    tmp_path: Path,
) -> None:
    """A volume that is not attached: one line naming the path, never a hub download."""
    missing = str(tmp_path / "models" / "whisper-small.en")
    done = run_handler({"input": {"text": "Hi."}}, tmp_path / "keep", whisper_model=missing)
    assert done.returncode != 0
    assert f"the worker cannot start: NARRATOR_WHISPER_MODEL {tmp_path}" in done.stderr
    assert "does not exist" in done.stderr and "Traceback" not in done.stderr
