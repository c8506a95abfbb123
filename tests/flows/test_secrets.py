"""Secrets stay secret: a planted RunPod key and AWS secret never show up in anything a
run leaves behind, whether it succeeds or fails."""

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


@pytest.mark.usefixtures("prefect_server")
def test_a_presigned_voice_url_leaves_no_signature_in_errors_states_or_logs(
    worker: BestOfN, serve: Callable[[Any], str], tmp_path: Path
) -> None:
    """A cast voice given as a presigned URL (its query string is the credential) that the
    clip server refuses, and one the worker's engine cannot clone: both runs fail saying
    why, and no error, flow or task state, or log line holds the signature. (The flow run's
    own `cast` parameter still holds what it was given: prefer a library voice name.)"""
    from fastapi import FastAPI, Response

    from flows.services import configured
    from gpu_worker.settings import WorkerSettings
    from tasks.cast import read_cast
    from tasks.settings import NarratorSettings
    from tests.gpu_worker.test_voices import clip

    clips = FastAPI()

    @clips.get("/voices/{name}")
    def voice(name: str) -> Response:
        return Response(clip(6.0), 200 if name == "mara.wav" else 403, media_type="audio/wav")

    host = serve(clips)
    endpoint = Endpoint(EndpointConfig(api_key=RUNPOD_KEY), [partial(handle, worker=worker)])
    settings = NarratorSettings(
        backend="runpod",
        runpod_endpoint_id="local",
        runpod_base_url=f"{serve(endpoint.app)}/v2",
        runpod_api_key=RUNPOD_KEY,
        endpoint_limit="",
        cache_dir=str(tmp_path / "cache"),
    )
    # the test's clip server is on 127.0.0.1 and plain http: allowed for this test only
    fetching = WorkerSettings(allow_http_voices=True, allow_private_voice_urls=True)
    source = tmp_path / "keys.md"
    source.write_text(CHAPTER)
    errors = []
    with configured(settings, fetching):
        for name, says in (("gone.wav", "HTTP 403"), ("mara.wav", "cannot clone")):
            cast = read_cast(f'[narrator]\nvoice = "{host}/voices/{name}?{SIGNATURE}"\n', "c")
            with pytest.raises(PermanentError) as failure:
                narrate_chapter(str(source), str(tmp_path / name), None, OPTIONS, cast)
            assert says in str(failure.value) and f"/voices/{name}?…" in str(failure.value)
            errors.append(("exception", str(failure.value)))
    seen = list(errors)
    with get_client(sync_client=True) as prefect:
        for run in prefect.read_flow_runs():
            seen.append((f"run {run.name} state", repr(run.state)))
        for task_run in prefect.read_task_runs():
            seen.append((f"task {task_run.name} state", repr(task_run.state)))
        seen += [("log", entry.message) for entry in prefect.read_logs()]
        seen += [(f"artifact {a.key}", repr(a.data)) for a in prefect.read_artifacts()]
    assert any("cannot clone" in text for where, text in seen if where.startswith("task"))
    leaks = [where for where, text in seen if "PLANTED" in text]
    assert leaks == []
