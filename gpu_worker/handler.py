"""The RunPod serverless entry point: job -> GenerateRequest -> best-of-N -> GenerateResult.

    python -m gpu_worker.handler                                   # on RunPod: serve jobs
    python -m gpu_worker.handler --test_input '{"input": {...}}'   # the SDK's local runner
    python -m gpu_worker.handler --rp_serve_api                    # the SDK's local server

The engine and Whisper load once, when the worker starts, not per job. A request that fails
validation is answered `{"error": "InputError: invalid request: n_candidates: ..."}`, which
RunPod reports as a FAILED job with that message; the error's class name comes first so a
client can tell transient failures (worth retrying) from permanent ones.
"""

import base64
import logging
import re
from pathlib import Path
from typing import Any

from gpu_worker.errors import NarratorError
from gpu_worker.generate import Worker
from gpu_worker.schema import parse_request
from gpu_worker.settings import WorkerSettings

log = logging.getLogger("narrator.worker")


def handle(job: dict[str, Any], worker: Worker, keep_audio: Path | None = None) -> dict[str, Any]:
    """One job. Never raises for a request's own problems: they become {"error": ...}.
    With `keep_audio`, the chosen audio is also written there as <job id>.wav."""
    try:
        request = parse_request(job.get("input"))
        result = worker.generate(request)
    except NarratorError as e:
        log.warning("job %s failed: %s: %s", job.get("id"), type(e).__name__, e)
        return {"error": f"{type(e).__name__}: {e}"}
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
    worker = Worker.load(settings)  # eager: a cold start pays for it once
    runpod.serverless.start({"handler": lambda job: handle(job, worker, settings.keep_audio_dir)})


if __name__ == "__main__":
    main()
