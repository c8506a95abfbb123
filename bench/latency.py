"""A stand-in GPU fleet for benchmarks: the local RunPod endpoint with W worker slots whose
handler answers after a chosen latency instead of running a model.

    serve(endpoint)                  the endpoint on 127.0.0.1, its base URL
    LatencyHandler(spec)             one job: sleep the chunk's latency, return its audio
    fleet(workers, spec)             an Endpoint with `workers` slots of LatencyHandler
    RemoteFleet(workers, spec)       the same in a child process, with its jobs' timeline
    chapter(chunks, path)            a chapter that splits into exactly `chunks` chunks

A latency spec is `const:SECONDS` or `lognormal:MEDIAN:SIGMA`. A chunk's latency is drawn
from a generator seeded by its text, so every dispatcher in a benchmark sees the same
latency for the same chunk. The answer is a real GenerateResult: speech-shaped noise as a
24 kHz WAV (about 15 characters per second, like narration), so the flow decodes,
concatenates and measures real audio. Bench-only: nothing in the product imports this.
"""

import base64
import hashlib
import json
import math
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn

from gpu_worker.schema import (
    CandidateReport,
    GenerateMetadata,
    GenerateResult,
    parse_request,
    request_digest,
)
from gpu_worker.wav import encode_wav
from local_endpoint.server import Endpoint, EndpointConfig

RATE = 24000
CHARS_PER_SECOND = 15.0
API_KEY = "bench"


def serve(endpoint: Endpoint) -> str:
    """Serve `endpoint` on a free 127.0.0.1 port in a daemon thread; its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(endpoint.app, host="127.0.0.1", port=0, log_level="error")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


def latency_of(text: str, spec: str) -> float:
    """The seconds a chunk of `text` takes under `spec` (the same for every caller)."""
    kind, *numbers = spec.split(":")
    values = [float(n) for n in numbers]
    if kind == "const" and len(values) == 1:
        return values[0]
    if kind == "lognormal" and len(values) == 2:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
        median, sigma = values
        return float(median * math.exp(sigma * np.random.default_rng(seed).standard_normal()))
    raise ValueError(f"latency spec {spec!r}: use const:SECONDS or lognormal:MEDIAN:SIGMA")


def speechlike(seconds: float, seed: int) -> np.ndarray:
    """Noise shaped like speech: syllable-rate bursts with short gaps, about -20 dBFS."""
    rng = np.random.default_rng(seed)
    n = max(1, round(seconds * RATE))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * np.arange(n) / RATE + rng.uniform(0, 6))
    return (0.1 * rng.standard_normal(n) * envelope).astype(np.float32)


class LatencyHandler:
    """A worker slot that takes the chunk's latency and returns its audio."""

    def __init__(self, spec: str) -> None:
        latency_of("", spec)  # a bad spec fails here, not inside a job
        self.spec = spec

    def __call__(self, job: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        text = str(job["input"]["text"])
        seconds = max(0.5, len(text) / CHARS_PER_SECOND)
        audio = speechlike(seconds, len(text))
        report = CandidateReport(
            round=0,
            seed=0,
            score=100.0,
            passed=True,
            transcript=text,
            duration_seconds=round(seconds, 3),
            synthesis_ms=0.0,
            validation_ms=0.0,
        )
        result = GenerateResult(
            audio_base64=base64.b64encode(encode_wav(audio, RATE)).decode("ascii"),
            best_score=100.0,
            passed=True,
            transcript=text,
            sample_rate=RATE,
            audio_duration_seconds=round(audio.size / RATE, 3),
            request_sha256=request_digest(parse_request(job["input"])),
            metadata=GenerateMetadata(
                candidates_generated=1,
                candidates_passed=1,
                all_scores=[100.0],
                retries_used=0,
                generation_time_ms=0.0,
                validation_time_ms=0.0,
                engine=f"bench-latency {self.spec}",
                validator="none",
                candidates=[report],
            ),
        )
        answer = result.model_dump(mode="json")
        # the latency is the whole job: making the answer is part of it, not added to it
        time.sleep(max(0.0, latency_of(text, self.spec) - (time.monotonic() - started)))
        return answer


def fleet(workers: int, spec: str) -> Endpoint:
    """The local endpoint with `workers` slots, each a LatencyHandler. Finished jobs are
    kept an hour whichever way they came (RunPod forgets a /runsync job after a minute),
    so a benchmark's makespan sees every job."""
    config = EndpointConfig(
        api_key=API_KEY, run_retention_s=3600, runsync_retention_s=3600, record_delivery=True
    )
    return Endpoint(config, [LatencyHandler(spec)] * workers)


class RemoteFleet:
    """The fleet in a process of its own, as a real fleet is remote: in the dispatcher's
    process its HTTP answers (each carries a chunk's WAV as ~0.7 MB of base64 JSON) would
    compete with the dispatcher for one GIL. Asked over a pipe for its jobs' timeline."""

    def __init__(self, workers: int, spec: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.latency", str(workers), spec],
            cwd=Path(__file__).parent.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self.url = self._read()["url"]

    def timeline(self) -> dict[str, Any]:
        """{"jobs": [{created, started, finished, delivered}, ...] (time.monotonic, which
        every process on the machine shares), "requests": API calls answered}."""
        return self._ask("timeline")

    def reset(self) -> None:
        """Forget every job and the request count."""
        self._ask("reset")

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()  # the child exits at the end of its input
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._read()

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the fleet process ended ({self.process.poll()})")
        answer: dict[str, Any] = json.loads(line)
        return answer


def _serve_remote(workers: int, spec: str) -> None:
    """The child side of RemoteFleet: serve, then answer its commands until stdin ends."""
    endpoint = fleet(workers, spec)
    print(json.dumps({"url": serve(endpoint)}), flush=True)
    for command in sys.stdin:
        if command.strip() == "timeline":
            jobs = [
                {k: getattr(j, k) for k in ("created", "started", "finished", "delivered")}
                for j in list(endpoint.jobs.values())
            ]
            print(json.dumps({"jobs": jobs, "requests": endpoint.requests}), flush=True)
        elif command.strip() == "reset":
            endpoint.jobs.clear()
            endpoint.requests = 0
            print("{}", flush=True)


WORDS = "harbour lantern gull tide rope anchor keel mast sail pier beacon shore".split()


def chapter_text(chunks: int) -> str:
    """A chapter that splits into exactly `chunks` chunks: one paragraph of about 200
    characters each (a typical chunk), every one different."""
    paragraphs = []
    for i in range(chunks):
        words = [WORDS[(i * 7 + k * (i % 5 + 1)) % len(WORDS)] for k in range(6)]
        sentence = f"Paragraph {i + 1} tells of the {' and the '.join(words)}"
        paragraphs.append(f"{sentence}. The keeper wrote it down in the log that night.")
    return "\n\n".join(paragraphs) + "\n"


if __name__ == "__main__":
    _serve_remote(int(sys.argv[1]), sys.argv[2])
