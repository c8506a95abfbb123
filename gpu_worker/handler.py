"""The RunPod serverless entry point: job -> GenerateRequest -> best-of-N -> GenerateResult.

    python -m gpu_worker.handler                                   # on RunPod: serve jobs
    python -m gpu_worker.handler --test_input '{"input": {...}}'   # the SDK's local runner
    python -m gpu_worker.handler --rp_serve_api                    # the SDK's local server

The engine and Whisper load once, when the worker starts, not per job. A job that fails is
answered `{"error": "<wire error as JSON>"}` (gpu_worker/errors.py: kind, code, message),
which RunPod reports as a FAILED job carrying that string, so the client knows without
guessing whether to retry. A CUDA error also asks RunPod to replace this worker
(`refresh_worker`): its CUDA context is gone, and every later job would fail the same way.
"""

import base64
import json
import logging
import re
import tempfile
from pathlib import Path
from typing import Any

from gpu_worker.best_of_n import BestOfN
from gpu_worker.errors import InputError, NarratorError, classify, to_wire
from gpu_worker.schema import parse_request
from gpu_worker.settings import WorkerSettings

log = logging.getLogger("narrator.worker")


def handle(job: dict[str, Any], worker: BestOfN, keep_audio: Path | None = None) -> dict[str, Any]:
    """One job. Never raises: every failure becomes {"error": <wire error>}.
    With `keep_audio`, the chosen audio is also written there as <job id>.wav."""
    try:
        request = parse_request(job.get("input"))
        result = worker.run(request)
    except Exception as e:
        known = classify(e)
        wire = to_wire(known)
        log.warning("job %s failed: %s %s: %s", job.get("id"), *wire.values())
        answer: dict[str, Any] = {"error": json.dumps(wire)}
        if known.code == "cuda_error":
            answer["refresh_worker"] = True
        return answer
    if keep_audio:
        name = re.sub(r"[^A-Za-z0-9._-]", "_", str(job.get("id", "job")))
        try:
            (keep_audio / f"{name}.wav").write_bytes(base64.b64decode(result.audio_base64))
        except OSError as e:  # a copy for later listening: the job's result still goes back
            log.warning("job %s: could not keep its audio in %s: %s", job.get("id"), keep_audio, e)
    log.info(
        "job %s: score %.1f, %d candidates, %.1f s audio",
        job.get("id"),
        result.best_score,
        result.metadata.candidates_generated,
        result.audio_duration_seconds,
    )
    return result.model_dump(mode="json")


def check_writable(folder: Path) -> None:
    """Fail at start, in one line, when `folder` cannot be written (a network volume is
    owned by root; a worker that found out at its first job would fail that job)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".narrator-probe-"):
            pass
    except OSError as e:
        raise InputError(
            f"NARRATOR_KEEP_AUDIO_DIR {folder} is not writable by this worker ({e.strerror}): "
            "create it writable, or unset NARRATOR_KEEP_AUDIO_DIR"
        ) from e


def main() -> None:
    import runpod

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = WorkerSettings()
    try:
        if settings.keep_audio_dir:
            check_writable(settings.keep_audio_dir)
        worker = BestOfN.load(settings)  # eager: a cold start pays for it once
    except NarratorError as e:  # a setting or a model file: one line that says which
        log.error("the worker cannot start: %s", e)
        raise SystemExit(1) from None
    runpod.serverless.start({"handler": lambda job: handle(job, worker, settings.keep_audio_dir)})


if __name__ == "__main__":
    main()
