"""`narrator serve`'s speech API over a real socket, driven by the official `openai`
package and by curl: audio that Whisper hears back, the cache, streaming in order, the
voice routes, the key, and the limits."""

import base64
import io
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import av
import httpx
import numpy as np
import openai
import pytest
import soundfile as sf

from flows.speech.app import ApiSettings, create_app
from gpu_worker.best_of_n import BestOfN
from gpu_worker.scoring import compare
from tasks.settings import NarratorSettings
from tests.conftest import local_backend

pytestmark = pytest.mark.usefixtures("prefect_server")
KEY = "sk-test-narrator-0123456789"
TEXT = "The keeper climbed the stairs at dusk. He lit the great lamp, and the beam swept out."
SIX = [
    "The keeper climbed the stairs at dusk and lit the lamp.",
    "The beam swept across the dark water all night, long and slow.",
    "At dawn the boat came home to the harbour with fish.",
    "The gulls rose from the rocks and circled the tower.",
    "By noon the wind had turned and the sea was grey.",
    "In the evening the keeper wrote it all in his log.",
]


def engine_calls() -> int:
    return int(local_backend().requests)


@pytest.fixture
def api(serve, tmp_path: Path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    settings = NarratorSettings(
        cache_dir=str(tmp_path / "cache"), voice_library=str(tmp_path / "voices")
    )
    limits = ApiSettings(key=KEY, max_in_flight=4, max_upload_bytes=2_000_000)
    yield serve(create_app(limits, settings))


def client(api: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{api}/v1", api_key=KEY, max_retries=0)


def heard(worker: BestOfN, audio: np.ndarray, rate: int) -> str:
    return worker.validator.transcribe(audio, rate).text


def decode(data: bytes) -> tuple[np.ndarray, int]:
    with av.open(io.BytesIO(data)) as container:
        frames = [f.to_ndarray()[0] for f in container.decode(audio=0)]
        rate = container.streams.audio[0].rate
    return np.concatenate(frames).astype(np.float32), rate


def test_the_openai_client_gets_speech_that_says_the_text_and_a_repeat_is_cached(
    api: str, worker: BestOfN
) -> None:
    speech = client(api).audio.speech.create(
        model="tts-1", voice="alloy", input=TEXT, response_format="wav"
    )
    audio, rate = sf.read(io.BytesIO(speech.content), dtype="float32")
    assert rate == 24000 and 3.0 < audio.size / rate < 12.0
    assert compare(TEXT, heard(worker, audio, rate)).wer <= 0.08

    calls = engine_calls()
    for kind in ("mp3", "opus", "aac", "flac"):
        again = client(api).audio.speech.create(
            model="tts-1", voice="alloy", input=TEXT, response_format=kind
        )
        samples, kind_rate = decode(again.content)
        assert samples.size / kind_rate == pytest.approx(audio.size / rate, abs=0.1), kind
    pcm = client(api).audio.speech.create(
        model="tts-1", voice="alloy", input=TEXT, response_format="pcm"
    )
    assert np.array_equal(np.frombuffer(pcm.content, "<i2"), (audio * 32768).astype("<i2"))
    assert engine_calls() == calls  # every repeat came from the cache


def last_chunk_finished() -> datetime:
    """When the latest speak flow run's last chunk task finished, as Prefect recorded it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as prefect:
        [run] = prefect.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["speak"])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
        tasks = prefect.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [run.id]}))
    ends = [t.end_time for t in tasks if t.name.startswith("chunk-") and t.end_time]
    assert len(ends) == len(SIX)
    return max(ends)


def test_streaming_sends_the_first_audio_long_before_the_last(api: str, worker: BestOfN) -> None:
    """Six paragraphs, six chunks: the first bytes arrive before half the total time, and
    the whole stream, in order, is the text."""
    text = "\n\n".join(SIX)
    started, first, received = time.monotonic(), None, bytearray()
    first_at: datetime | None = None
    with client(api).audio.speech.with_streaming_response.create(
        model="tts-1", voice="heart", input=text, response_format="pcm"
    ) as response:
        for piece in response.iter_bytes():
            if piece and first is None:
                first = time.monotonic() - started
                first_at = datetime.now(UTC)
            received += piece
    total = time.monotonic() - started
    # the first audio left before the last chunk was generated (server's own task records;
    # the ratio itself, about a third, is measured by bench/speech_api.py)
    assert first is not None and first < total, (first, total)
    assert first_at is not None and first_at < last_chunk_finished(), (first, total)
    audio = np.frombuffer(bytes(received), "<i2").astype(np.float32) / 32768
    assert compare(" ".join(SIX), heard(worker, audio, 24000)).wer <= 0.08


def test_curl_and_server_sent_events(api: str, tmp_path: Path) -> None:
    curl = shutil.which("curl")
    assert curl, "make test installs curl"
    out = tmp_path / "speech.mp3"
    body = json.dumps({"input": "The gulls rose from the rocks.", "response_format": "mp3"})
    done = subprocess.run(
        [curl, "-sS", "-f", "-o", str(out), f"{api}/v1/audio/speech",
         "-H", f"Authorization: Bearer {KEY}", "-H", "Content-Type: application/json",
         "-d", body],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    samples, rate = decode(out.read_bytes())
    assert 1.0 < samples.size / rate < 6.0

    events = []
    with httpx.stream(
        "POST",
        f"{api}/v1/audio/speech",
        headers={"X-API-Key": KEY},
        json={"input": "The gulls rose from the rocks.", "response_format": "pcm",
              "stream_format": "sse"},
        timeout=120,
    ) as response:  # fmt: skip
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in response.iter_lines() if line]
    assert events[-1]["type"] == "speech.audio.done"
    pcm = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert {e["type"] for e in events[:-1]} == {"speech.audio.delta"}
    assert len(pcm) / 2 / 24000 == pytest.approx(samples.size / rate, abs=0.1)


def test_the_voice_routes_round_trip_a_clip(api: str) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    clip = httpx.post(
        f"{api}/tts/generate", headers=headers, json={"text": TEXT}, timeout=120
    )  # seed 004's route: WAV, the default voice
    assert clip.status_code == 200 and clip.headers["content-type"] == "audio/wav"
    added = httpx.post(
        f"{api}/voices",
        headers=headers,
        data={"name": "keeper"},
        files={"file": ("keeper.wav", clip.content, "audio/wav")},
    )
    assert added.status_code == 201, added.text
    assert added.json()["name"] == "keeper" and added.json()["seconds"] > 3
    assert [v["name"] for v in httpx.get(f"{api}/voices", headers=headers).json()] == ["keeper"]

    silent = io.BytesIO()
    sf.write(silent, np.zeros(24000 * 5, np.float32), 24000, format="WAV")
    refused = httpx.post(
        f"{api}/voices",
        headers=headers,
        data={"name": "quiet"},
        files={"file": ("quiet.wav", silent.getvalue(), "audio/wav")},
    )
    assert refused.status_code == 422 and "silent" in refused.json()["detail"]

    assert httpx.delete(f"{api}/voices/keeper", headers=headers).status_code == 204
    assert httpx.get(f"{api}/voices", headers=headers).json() == []
    gone = httpx.delete(f"{api}/voices/keeper", headers=headers)
    assert gone.status_code == 404 and gone.json()["detail"] == "Voice not found: 'keeper'"
    unknown = httpx.post(
        f"{api}/v1/audio/speech", headers=headers, json={"input": "Hello.", "voice": "nobody"}
    )
    assert unknown.status_code == 404 and unknown.json()["field"] == "voice"


def _raw(api: str, request: bytes) -> bytes:
    """Send `request` as is and read what the server answers (no client library between)."""
    address = urlparse(api)
    with socket.create_connection((address.hostname, address.port), timeout=10) as s:
        s.sendall(request)
        return s.recv(65536)


def test_keys_and_limits(api: str) -> None:
    url = f"{api}/v1/audio/speech"
    body = {"input": "Hello there."}
    missing = httpx.post(url, json=body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    wrong = httpx.post(url, json=body, headers={"Authorization": "Bearer sk-wrong"})
    assert wrong.status_code == 401 and KEY not in wrong.text
    assert httpx.post(url, json=body, headers={"X-API-Key": "sk-wrong"}).status_code == 401
    assert httpx.get(f"{api}/health").json()["status"] == "ok"  # no key: the health check
    headers = {"Authorization": f"Bearer {KEY}"}
    assert httpx.get(f"{api}/v1/models").status_code == 401
    [model] = client(api).models.list().data
    assert model.id == "narrator" and model.owned_by == "local"

    # a declared body over the limit is refused before any of it is sent
    answer = _raw(
        api,
        b"POST /voices HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
        + b"\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        b"Content-Length: 50000000\r\n\r\n",
    )  # fmt: skip
    assert answer.startswith(b"HTTP/1.1 413")

    # ... and one sent without a length is cut off once it passes the limit
    part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
    part += b"\0" * 2_100_000
    answer = _raw(
        api,
        b"POST /voices HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
        + b"\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + f"{len(part):x}\r\n".encode() + part,
    )  # fmt: skip
    assert answer.startswith(b"HTTP/1.1 413") and b"2,000,000-byte limit" in answer
    long = httpx.post(url, headers=headers, json={"input": "word " * 1000})
    assert long.status_code == 400 and long.json()["field"] == "input"
    nothing = httpx.post(url, headers=headers, json={"input": "*** --- ***"})
    assert nothing.status_code == 422 and "nothing in it can be said" in nothing.json()["detail"]
    fast = httpx.post(url, headers=headers, json={"input": "Hello.", "speed": 3})
    assert fast.status_code == 422 and fast.json()["field"] == "speed"

    # twenty at once over a limit of four: four are served, the rest told to come back
    gate, answers = threading.Barrier(20), []

    def ask(i: int) -> None:
        gate.wait()
        answers.append(
            httpx.post(url, headers=headers, json={"input": f"Request {i} is here."}, timeout=120)
        )

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * 4 + [429] * 16, codes
    assert all(a.headers["retry-after"] == "1" for a in answers if a.status_code == 429)
    assert httpx.post(url, headers=headers, json=body, timeout=120).status_code == 200


def test_the_api_image_copies_what_it_installs_and_runs_a_valid_command() -> None:
    """No Docker engine here: the Dockerfile is checked against the tree it builds from."""
    from typer.testing import CliRunner

    from flows.cli import app

    root = Path(__file__).parents[2]
    lines = (root / "deployments" / "speech-api.Dockerfile").read_text().splitlines()
    copied = [line.split()[1:-1] for line in lines if line.startswith("COPY ")]
    sources = {s for group in copied for s in group}
    assert all((root / s).exists() for s in sources), sources
    packages = {"flows", "tasks", "gpu_worker", "local_endpoint", "bench"}  # pyproject's
    assert packages <= sources and "pyproject.toml" in sources
    [command] = [json.loads(line[4:]) for line in lines if line.startswith("CMD ")]
    assert command[:2] == ["narrator", "serve"]
    checked = CliRunner().invoke(app, [*command[1:], "--help"])
    assert checked.exit_code == 0, checked.output  # every flag exists
    assert "EXPOSE 8880" in lines and "/health" in " ".join(lines)


def test_serve_needs_a_key_or_a_loopback_address(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    monkeypatch.delenv("NARRATOR_API_KEY", raising=False)
    keyless = CliRunner().invoke(app, ["serve"], terminal_width=300)
    assert keyless.exit_code == 1 and "set NARRATOR_API_KEY" in keyless.output
    exposed = CliRunner().invoke(app, ["serve", "--no-auth", "--host", "0.0.0.0"])
    assert exposed.exit_code == 1 and "127.0.0.1 only" in exposed.output
