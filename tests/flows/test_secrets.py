"""Secrets stay secret: a planted RunPod key and AWS secret never show up in anything a
run leaves behind, whether it succeeds or fails."""

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import pytest
from prefect.client.orchestration import get_client

from flows.chapter import NarrationOptions, narrate_chapter
from gpu_worker.best_of_n import BestOfN
from gpu_worker.errors import PermanentError
from gpu_worker.handler import handle
from gpu_worker.schema import GenerationParams
from local_endpoint.faults import FaultProfile
from local_endpoint.server import Endpoint, EndpointConfig

RUNPOD_KEY = "rp_PLANTED_runpod_key_4f1c9e7a2b"
AWS_SECRET = "aws_PLANTED_secret_8d3b6a0f5e"
OPTIONS = NarrationOptions(
    generation=GenerationParams(n_candidates=1), validate_chapter=False, formats=[]
)
CHAPTER = "# Keys\n\nThe keeper kept the keys on a hook. Nobody else touched them.\n"


@pytest.mark.usefixtures("prefect_server")
def test_a_planted_key_appears_in_no_log_artifact_output_parameter_or_error(
    s3: str,
    worker: BestOfN,
    serve: Callable[[Any], str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    endpoint = Endpoint(EndpointConfig(api_key=RUNPOD_KEY), [partial(handle, worker=worker)])
    base = serve(endpoint.app)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)  # moto accepts any secret
    client = boto3.client("s3", endpoint_url=s3)
    client.create_bucket(Bucket="books")
    client.put_object(Bucket="books", Key="ch/keys.md", Body=CHAPTER.encode())
    for name, value in {
        "BACKEND": "runpod",
        "RUNPOD_ENDPOINT_ID": "local",
        "RUNPOD_BASE_URL": f"{base}/v2",
        "RUNPOD_API_KEY": RUNPOD_KEY,
        "S3_ENDPOINT_URL": s3,
        "CACHE_DIR": "s3://books/cache",
        "ENDPOINT_LIMIT": "",
    }.items():
        monkeypatch.setenv(f"NARRATOR_{name}", value)

    result = narrate_chapter("s3://books/ch/keys.md", "s3://books/audio", None, OPTIONS)
    endpoint.drill_faults(FaultProfile(permanent_texts=["keeper"]))
    with pytest.raises(PermanentError) as failure:
        narrate_chapter("s3://books/ch/keys.md", "s3://books/failed", None, OPTIONS.model_copy(
            update={"refresh_cache": True}))  # fmt: skip

    seen: list[tuple[str, str]] = [("exception", str(failure.value)), ("result", repr(result))]
    for listing in client.list_objects_v2(Bucket="books")["Contents"]:
        body = client.get_object(Bucket="books", Key=listing["Key"])["Body"].read()
        seen.append((f"s3://books/{listing['Key']}", body.decode("latin-1")))
    with get_client(sync_client=True) as prefect:
        for run in prefect.read_flow_runs():
            seen.append((f"run {run.name} parameters", repr(run.parameters)))
            seen.append((f"run {run.name} state", repr(run.state)))
        seen += [("log", entry.message) for entry in prefect.read_logs()]
        seen += [(f"artifact {a.key}", repr(a.data)) for a in prefect.read_artifacts()]
        for document in prefect.read_block_documents(include_secrets=True):
            seen.append((f"block {document.name}", repr(document.data)))
    assert len(seen) > 20 and any(
        where.startswith("block narrator-chunk-cache") for where, _ in seen
    )
    leaks = [where for where, text in seen if RUNPOD_KEY in text or AWS_SECRET in text]
    assert leaks == []


SIGNATURE = "X-Amz-Signature=PLANTEDsig0c4f&X-Amz-Credential=PLANTEDcred9a1"


def recorded(prefect: Any) -> list[tuple[str, str]]:
    """Every flow run's parameters and state, and every log line, on the Prefect server."""
    seen = []
    for run in prefect.read_flow_runs():
        seen.append((f"run {run.name} parameters", repr(run.parameters)))
        seen.append((f"run {run.name} state", repr(run.state)))
    seen += [("log", entry.message) for entry in prefect.read_logs()]
    return seen


@pytest.mark.usefixtures("prefect_server")
def test_a_presigned_voice_url_is_refused_before_any_run_records_it(tmp_path: Path) -> None:
    """Prefect stores a run's parameters and shows them in its UI, so a presigned URL (its
    query string is the credential) is refused as a voice wherever a run is asked for: a
    call from Python, a cast, the CLI, and a deployment's run from the UI or API (checked
    by the Prefect server against the flow's parameter schema)."""
    from prefect.client.schemas.actions import DeploymentCreate
    from prefect.exceptions import ParameterTypeError
    from prefect.utilities.callables import parameter_schema

    from gpu_worker.errors import InputError
    from tasks.cast import read_cast

    presigned = f"https://books.s3.amazonaws.com/voices/mara.wav?{SIGNATURE}"
    source = tmp_path / "keys.md"
    source.write_text(CHAPTER)
    with get_client(sync_client=True) as prefect:
        runs_before = len(prefect.read_flow_runs())
    with pytest.raises(ParameterTypeError, match="an s3:// URI"):
        narrate_chapter(str(source), str(tmp_path / "out"), presigned, OPTIONS)
    with pytest.raises(ParameterTypeError, match="an s3:// URI"):  # a copy with options too
        narrate_chapter.with_options(name="copy")(str(source), None, presigned, OPTIONS)
    with pytest.raises(InputError, match="an s3:// URI") as refused:
        read_cast(f'[speakers.Mara]\nvoice = "{presigned}"\n', "cast.toml")
    assert "PLANTED" not in str(refused.value)
    for url in (presigned, "https://user:PLANTEDpass@host/v.wav"):
        cli = subprocess.run(
            [sys.executable, "-m", "flows.cli", "run", str(source), "--voice", url],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert cli.returncode == 1
        assert "--voice: a URL carrying a credential" in cli.stderr
        assert "PLANTED" not in cli.stdout + cli.stderr

    with get_client(sync_client=True) as prefect:
        flow_id = prefect.create_flow_from_name("narrate-chapter")
        deployment = prefect.create_deployment(
            **DeploymentCreate(
                name="secrets-check",
                flow_id=flow_id,
                parameter_openapi_schema=parameter_schema(narrate_chapter.fn).model_dump(),
                enforce_parameter_schema=True,
            ).model_dump(exclude_unset=True)
        )
        for parameters in (
            {"source": "ch.md", "voice": presigned},
            {"source": "ch.md", "cast": {"narrator": {"voice": presigned}}},
        ):
            with pytest.raises(Exception, match=r"422|409|Validation|invalid"):
                prefect.create_flow_run_from_deployment(deployment, parameters=parameters)
        allowed = prefect.create_flow_run_from_deployment(
            deployment, parameters={"source": "ch.md", "voice": "s3://books/voices/mara.wav"}
        )
        assert allowed.parameters["voice"] == "s3://books/voices/mara.wav"
        prefect.delete_flow_run(allowed.id)
        assert len(prefect.read_flow_runs()) == runs_before  # none of them was recorded
        leaks = [where for where, text in recorded(prefect) if "PLANTED" in text]
    assert leaks == []


def test_a_presigned_clip_the_worker_cannot_use_is_reported_without_its_signature(
    worker: BestOfN, serve: Callable[[Any], str], caplog: pytest.LogCaptureFixture
) -> None:
    """A presigned clip sent to the endpoint directly (the flows refuse them) that its
    server refuses, or that the engine cannot clone: the error and the worker's log say why
    without the signature."""
    from fastapi import FastAPI, Response

    from gpu_worker import voices
    from gpu_worker.errors import NarratorError, from_wire
    from gpu_worker.settings import WorkerSettings
    from tests.gpu_worker.test_voices import clip

    clips = FastAPI()

    @clips.get("/voices/{name}")
    def voice(name: str) -> Response:
        return Response(clip(6.0), 200 if name == "mara.wav" else 403, media_type="audio/wav")

    host = serve(clips)
    # the test's clip server is on 127.0.0.1 and plain http: allowed for this test only
    fetching = WorkerSettings(allow_http_voices=True, allow_private_voice_urls=True)
    with caplog.at_level(logging.INFO), pytest.raises(NarratorError) as refused:
        voices.fetch(f"{host}/voices/gone.wav?{SIGNATURE}", fetching)
    assert "HTTP 403" in str(refused.value) and "/voices/gone.wav?…" in str(refused.value)
    with caplog.at_level(logging.INFO):
        url = f"{host}/voices/mara.wav?{SIGNATURE}"
        answer = handle({"id": "j1", "input": {"text": "Keys.", "audio_prompt_url": url}}, worker)
    error = from_wire(json.loads(answer["error"]))
    assert "cannot clone" in str(error) and "/voices/mara.wav?…" in str(error)
    assert "PLANTED" not in caplog.text + answer["error"]
