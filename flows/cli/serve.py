"""`narrator serve`: the speech API (flows/speech/app.py) on a port, until Ctrl-C."""

import ipaddress
from typing import Annotated

import typer

from flows.cli.common import (
    Backend,
    CacheDir,
    Verbose,
    app,
    command_settings,
    err,
    fail,
    prefect_console,
)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8880,
    no_auth: Annotated[
        bool,
        typer.Option("--no-auth", help="Serve without an API key (loopback addresses only)."),
    ] = False,
    max_in_flight: Annotated[
        int | None,
        typer.Option(
            help="Requests generating at once; beyond, 429 (default: NARRATOR_API_MAX_IN_FLIGHT, "
            "else 4)",
            min=1,
            show_default=False,
        ),
    ] = None,
    backend: Backend = None,
    cache_dir: CacheDir = None,
    verbose: Verbose = False,
) -> None:
    """Serve the speech API: OpenAI's POST /v1/audio/speech (streamed, every format), seed
    004's /tts/generate and /voices, /health. Clients send NARRATOR_API_KEY as
    `Authorization: Bearer KEY` or `X-API-Key`. Each request is chunked, generated in
    parallel on the backend and cached, as a chapter is."""
    import uvicorn
    from pydantic import ValidationError

    from flows.services import configured
    from flows.speech.app import ApiSettings, create_app
    from gpu_worker.schema import explain

    settings, worker = command_settings(backend, cache_dir)
    try:
        api = ApiSettings()
        if max_in_flight:
            api = ApiSettings(max_in_flight=max_in_flight)
    except ValidationError as e:
        fail(f"invalid settings: {explain(e)}")
    if api.key is None and not no_auth:
        fail(
            "set NARRATOR_API_KEY to the key clients will send (Authorization: Bearer KEY), "
            "or pass --no-auth to serve without one on this machine only"
        )
    if no_auth:
        if not _loopback(host):
            fail(f"--no-auth serves anyone who can reach {host}; use it on 127.0.0.1 only")
        api = api.model_copy(update={"key": None})
    with configured(settings, worker), prefect_console(verbose):
        from prefect.client.orchestration import get_client

        err.print("starting Prefect's API (each request is a flow run)")
        with get_client(sync_client=True) as client:  # the temporary server, started now
            client.api_healthcheck()
        err.print(f"[bold]speech API:[/] http://{host}:{port}/v1/audio/speech  (Ctrl-C stops)")
        uvicorn.run(create_app(api, settings), host=host, port=port, log_level="warning")
