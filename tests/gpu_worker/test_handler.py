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


def run_handler(job: dict, keep: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NARRATOR_KEEP_AUDIO_DIR": str(keep)}
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
