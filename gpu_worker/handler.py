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
from pathlib import Path
from typing import Any

from gpu_worker.best_of_n import BestOfN
from gpu_worker.errors import classify, to_wire
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
        keep_audio.mkdir(parents=True, exist_ok=True)
        (keep_audio / f"{name}.wav").write_bytes(base64.b64decode(result.audio_base64))
    log.info(
        "job %s: score %.1f, %d candidates, %.1f s audio",
        job.get("id"),
        result.best_score,
        result.metadata.candidates_generated,
        result.audio_duration_seconds,
    )
    return result.model_dump(mode="json")


def main() -> None:
    import runpod

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = WorkerSettings()
    worker = BestOfN.load(settings)  # eager: a cold start pays for it once
    runpod.serverless.start({"handler": lambda job: handle(job, worker, settings.keep_audio_dir)})


if __name__ == "__main__":
    main()
