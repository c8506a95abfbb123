"""`narrator endpoint` and `narrator stack`: local RunPod endpoint and operations stack."""

from typing import Annotated

import typer
from pydantic import ValidationError

from flows.cli.common import app, err, fail, worker_settings
from gpu_worker.schema import explain


@app.command()
def endpoint(
    workers: Annotated[
        int,
        typer.Option(
            help="Worker slots: jobs run at once, each with its own engine and Whisper model.",
            min=1,
        ),
    ] = 2,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8000,
    endpoint_id: Annotated[str, typer.Option(help="The {id} in /v2/{id}/run.")] = "local",
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="NARRATOR_ENDPOINT_API_KEY",
            help="Bearer token clients must send "
            "(default: NARRATOR_ENDPOINT_API_KEY, else a new random one, printed)",
            show_default=False,
        ),
    ] = None,
    faults: Annotated[
        str | None,
        typer.Option(
            help="A fault drill, as JSON: e.g. '{\"rate\": 0.2}' for 20 % faults of every "
            'kind, \'{"rate": 1, "kinds": ["throttle"]}\' for sustained 429s. Fields: '
            "rate, kinds, retry_after, slow_seconds, permanent_texts, seed "
            "(local_endpoint/faults.py).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve a local RunPod-compatible endpoint around the real worker handler.

    It answers the hosted API (/run, /runsync, /status, /cancel, /health) on 127.0.0.1 with
    the configured engine (NARRATOR_ENGINE), so `narrator run --backend runpod` can be tried
    and tested without a RunPod account.
    """
    import secrets

    import uvicorn

    from local_endpoint.faults import FaultProfile
    from local_endpoint.server import EndpointConfig, with_workers

    try:
        drill = FaultProfile.model_validate_json(faults) if faults else FaultProfile()
    except ValidationError as e:
        fail(f"--faults: {explain(e)}")
    key = api_key or secrets.token_urlsafe(24)
    config = EndpointConfig(endpoint_id=endpoint_id, api_key=key, faults=drill)
    service = with_workers(config, worker_settings(), workers)
    err.print(
        f"[bold]local RunPod endpoint[/] with {workers} workers"
        + (f", fault drill {drill.model_dump_json()}" if faults else "")
        + ". Point narrator at it:\n"
        f"  export NARRATOR_BACKEND=runpod NARRATOR_RUNPOD_ENDPOINT_ID={endpoint_id} "
        f"NARRATOR_RUNPOD_BASE_URL=http://127.0.0.1:{port}/v2"
        + ("" if api_key else f" NARRATOR_RUNPOD_API_KEY={key}"),
        highlight=False,
    )
    uvicorn.run(service.app, host="127.0.0.1", port=port, log_level="warning")


@app.command()
def stack(
    port: Annotated[
        int, typer.Option(help="Port of the Prefect server and UI on 127.0.0.1.")
    ] = 4200,
    postgres: Annotated[
        bool,
        typer.Option(
            "--postgres",
            help="Keep the server's database in PostgreSQL (Debian's postgresql package, a "
            "cluster in out/stack/postgres on the next port) instead of SQLite: for large "
            "batches and several workers.",
        ),
    ] = False,
    workers: Annotated[
        int, typer.Option(help="Process workers on the pool (each takes whole chapters).", min=1)
    ] = 1,
) -> None:
    """Run the local operations stack until Ctrl-C: a Prefect server with its UI, the
    `narrator` process work pool, the deployments in prefect.yaml (narrate-chapter and
    nightly-batch), the automation that marks a run whose worker died as crashed, and
    workers that run them from this checkout.

    The server keeps its database in PREFECT_HOME (~/.prefect), or with --postgres in
    out/stack/postgres; logs go to out/stack/.
    """
    import time

    from flows import stack as ops
    from gpu_worker.errors import NarratorError

    err.print(f"starting the Prefect server on 127.0.0.1:{port}, then deploying prefect.yaml")
    try:
        running = ops.start(
            port=port, postgres=ops.ROOT / "out" / "stack" / "postgres" if postgres else None,
            workers=workers,
        )  # fmt: skip
    except NarratorError as e:
        fail(str(e))
    err.print(
        f"[bold]Prefect UI:[/] {running.ui_url}\n"
        f"  deployments: narrate-chapter (Run button), narrate-digest-elevenlabs, "
        "nightly-batch (02:00 daily)\n"
        f"  from a shell: PREFECT_API_URL={running.api_url} .venv/bin/prefect deployment run "
        "narrate-chapter/narrate-chapter -p source=samples/the-keeper-of-lantern-rock.md\n"
        f"  logs: {running.log_dir}/\n"
        "Ctrl-C stops the worker and the server.",
        highlight=False,
    )
    try:
        while all(p.poll() is None for p in running.processes):
            time.sleep(1)
        fail(f"a stack process exited; see {running.log_dir}/")
    except KeyboardInterrupt:
        err.print("stopping")
    finally:
        running.stop()
