"""`narrator voices`: the voice library's commands (add, list, show, remove)."""

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from flows.cli.common import app, err, fail, narrator_settings, worker_settings

voices_app = typer.Typer(
    help="The voice library: reference clips kept under a name (NARRATOR_VOICE_LIBRARY, a "
    "folder or s3://bucket/prefix). `narrator run --voice NAME` and cast files use them.",
    no_args_is_help=True,
)
app.add_typer(voices_app, name="voices")


def _library() -> Any:
    from flows.services import voice_library

    return voice_library(narrator_settings())


def _voice_line(voice: Any) -> str:
    return f"{voice.name:<16} {voice.seconds:5.1f} s  {voice.lufs:6.1f} LUFS  from {voice.source}"


@voices_app.command("add")
def voices_add(
    name: Annotated[str, typer.Argument(help="Letters, digits, '-' or '_'.", show_default=False)],
    file: Annotated[
        Path,
        typer.Argument(
            help="The clip: WAV, FLAC or OGG, 3-60 s of one voice (5-20 s is best).",
            show_default=False,
        ),
    ],
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace a voice of that name.")
    ] = False,
) -> None:
    """Check a clip and add it to the library: made mono at 24 kHz, edge silence trimmed,
    loudness normalised. Refused, saying why, if it is not audio, too short or long, silent
    or clipped."""
    from gpu_worker.errors import NarratorError

    try:
        data = file.read_bytes()
    except OSError as e:
        fail(f"{file}: {e.strerror or e}")
    try:
        voice = _library().add(name, data, str(file), replace=replace)
    except NarratorError as e:
        fail(str(e))
    out = Console(soft_wrap=True, highlight=False)
    out.print(f"added  {_voice_line(voice)}")
    for note in voice.notes:
        out.print(f"[yellow]note[/]   {note}")


@voices_app.command("list")
def voices_list() -> None:
    """The voices in the library, and the engine's built-in ones."""
    from gpu_worker.errors import NarratorError

    try:
        library = _library()
        found = library.entries()
    except NarratorError as e:
        fail(str(e))
    out = Console(soft_wrap=True, highlight=False)
    out.print(f"[bold]library[/] {library.location}")
    for voice in found:
        out.print(f"  {_voice_line(voice)}")
    if not found:
        out.print("  (empty: `narrator voices add NAME FILE`)")
    out.print(f"[bold]built in[/] {_built_in_voices()}")


def _built_in_voices() -> str:
    """The configured engine's own voices (the GPU engine's are not loaded just to list)."""
    settings = worker_settings()
    if settings.engine == "chatterbox":
        return "(chatterbox: clones library voices and reference clips)"
    from gpu_worker.engines import load_engine

    return f"({settings.engine} engine): {', '.join(load_engine(settings).voices())}"


@voices_app.command("show")
def voices_show(name: Annotated[str, typer.Argument(show_default=False)]) -> None:
    """Everything the library knows about one voice, as JSON."""
    from gpu_worker.errors import NarratorError

    try:
        library = _library()
        voice = library.get(name)
    except NarratorError as e:
        fail(str(e))
    print(json.dumps({**voice.model_dump(), "clip": library.clip(name)}, indent=2))


@voices_app.command("remove")
def voices_remove(name: Annotated[str, typer.Argument(show_default=False)]) -> None:
    """Remove a voice from the library (chapters already made keep their audio)."""
    from gpu_worker.errors import NarratorError

    try:
        _library().remove(name)
    except NarratorError as e:
        fail(str(e))
    err.print(f"removed {name}")
