"""`narrator review` and `narrator redo`: hear a narrated chapter, re-take or keep chunks."""

from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli.common import (
    app,
    command_settings,
    err,
    fail,
    prefect_console,
)


def chunk_list(option: str, value: str | None) -> list[int]:
    """'12,40' or '3-7,9' as chunk numbers."""
    if not value:
        return []
    numbers: list[int] = []
    try:
        for part in value.split(","):
            first, _, last = part.strip().partition("-")
            numbers += range(int(first), int(last or first) + 1)
    except ValueError:
        fail(f"{option} {value!r}: give chunk numbers like 12,40 or 3-7")
    return numbers


def take_choices(values: list[str]) -> dict[int, int]:
    """['12=1', '40=0'] as {chunk: take}."""
    choices = {}
    for value in values:
        chunk, _, take = value.partition("=")
        if not (chunk.strip().isdigit() and take.strip().isdigit()):
            fail(f"--take {value!r}: give CHUNK=TAKE, e.g. --take 12=1")
        choices[int(chunk)] = int(take)
    return choices


@app.command()
def redo(
    out_dir: Annotated[
        str, typer.Argument(help="A narrated chapter's output folder or s3:// prefix.")
    ],
    chunks: Annotated[
        str | None,
        typer.Option(
            "--chunks",
            "-c",
            help="Chunks to read again, e.g. 12,40 or 3-7: a new take each, with fresh "
            "seeds; every other chunk keeps its audio.",
            show_default=False,
        ),
    ] = None,
    take: Annotated[
        list[str] | None,
        typer.Option(
            "--take",
            help="CHUNK=TAKE: use an earlier take of a chunk again (no engine call); "
            "repeatable. metadata.json and takes.json list each chunk's takes.",
            show_default=False,
        ),
    ] = None,
    keep: Annotated[
        str | None,
        typer.Option(
            help="Chunks whose take to keep: `narrator run --refresh` leaves them as they are.",
            show_default=False,
        ),
    ] = None,
    release: Annotated[
        str | None, typer.Option(help="Kept chunks to let go again.", show_default=False)
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            help="The backend the chapter was narrated on: local, runpod or elevenlabs "
            "(default: NARRATOR_BACKEND, else local)",
            show_default=False,
        ),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            help="The chunk cache the chapter was narrated with (default: NARRATOR_CACHE_DIR)",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show Prefect's log lines.")
    ] = False,
) -> None:
    """Re-take some chunks of a narrated chapter: only they are generated, the chapter is
    joined again from every other chunk's cached audio, re-checked where it changed and
    published again."""
    asked = (
        chunk_list("--chunks", chunks),
        take_choices(take or []),
        chunk_list("--keep", keep),
        chunk_list("--release", release),
    )
    if not any(asked):
        fail("nothing to do: give --chunks, --take, --keep or --release")
    settings = command_settings(backend, cache_dir)
    result = _redo(out_dir, settings, *asked, verbose=verbose)
    from flows.cli.run import _summary

    _summary(result)


def _redo(out_dir: str, settings: tuple[Any, Any], *asked: Any, verbose: bool) -> Any:
    from flows.redo import redo_chunks
    from flows.services import configured
    from gpu_worker.errors import NarratorError

    try:
        with configured(*settings), prefect_console(verbose):
            return redo_chunks(out_dir, *asked)
    except NarratorError as e:
        fail(str(e))


@app.command()
def review(
    out_dir: Annotated[
        str, typer.Argument(help="A narrated chapter's output folder or s3:// prefix.")
    ],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8890,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            help="Chunk cache the chapter was made with, where earlier takes are heard "
            "from (default: NARRATOR_CACHE_DIR)",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show Prefect's log lines.")
    ] = False,
) -> None:
    """Serve a page to hear the chapter chunk by chunk (flagged first), mark chunks to redo
    or keep, compare takes, and apply: open the address it prints in a browser."""
    import uvicorn

    from flows.review.app import review_app
    from flows.services import configured
    from gpu_worker.errors import NarratorError
    from tasks.storage import result_storage

    settings, worker = command_settings(cache_dir=cache_dir)
    with configured(settings, worker), prefect_console(verbose):
        try:
            cache = result_storage(settings.cache_dir, settings.s3_endpoint_url)
            page = review_app(out_dir, settings.s3_endpoint_url, cache)
        except NarratorError as e:
            fail(str(e))
        err.print(f"[bold]review[/] {out_dir}: open http://127.0.0.1:{port}/  (Ctrl-C stops)")
        uvicorn.run(page, host="127.0.0.1", port=port, log_level="warning")
