"""What every narrator command shares: root command, error line, settings, quiet Prefect."""

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console

app = typer.Typer(
    help="narrator: long text in, narrated audio out — validated by speech recognition, "
    "with metadata and subtitles. Runs as a Prefect flow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, soft_wrap=True)


@app.callback()
def _root() -> None:
    """narrator: long text in, narrated audio out.

    Each chunk is generated several times and checked by speech recognition; the best
    reading is kept. Outputs: a 24 kHz WAV, SRT subtitles, segments.json and metadata.json.
    Settings (cache folder, workers, models) come from NARRATOR_* environment variables.
    """


def default(model: type[BaseModel], name: str) -> Any:
    return model.model_fields[name].default


def help_of(model: type[BaseModel], name: str) -> str:
    return model.model_fields[name].description or ""


def opt(model: type[BaseModel], name: str, *flags: str, **kw: Any) -> Any:
    return typer.Option(*flags, help=help_of(model, name), show_default=True, **kw)


def fail(message: str) -> NoReturn:
    """The command's one-line error (credentials in URLs cut out), and exit 1."""
    from gpu_worker.redaction import redact

    err.print(f"[bold red]narrator:[/] {redact(message)}", highlight=False, markup=True)
    raise typer.Exit(1)


BACKENDS = ("local", "runpod", "elevenlabs")


def check_backend(backend: str | None) -> None:
    """--backend names one of the backends (None: the setting's)."""
    if backend not in (None, *BACKENDS):
        fail(f"--backend must be 'local', 'runpod' or 'elevenlabs', not {backend!r}")


def command_settings(
    backend: str | None = None, cache_dir: Path | None = None, **more: Any
) -> tuple[Any, Any]:
    """A command's (NarratorSettings, WorkerSettings): the environment's, with its
    --backend, --cache-dir and any `more` options given on top; a bad one is one line."""
    check_backend(backend)
    given = {"backend": backend, "cache_dir": str(cache_dir) if cache_dir else None, **more}
    settings = narrator_settings(**{k: v for k, v in given.items() if v is not None})
    return settings, worker_settings()  # a bad NARRATOR_* worker setting is one line too


Backend = Annotated[
    str | None,
    typer.Option(
        help="local, runpod or elevenlabs (default: NARRATOR_BACKEND)", show_default=False
    ),
]
CacheDir = Annotated[Path | None, typer.Option(help="Chunk cache folder", show_default=False)]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's log lines.")]


def narrator_settings(**overrides: Any) -> Any:
    """NarratorSettings from the environment with the command line's `overrides` on top; a
    bad value is one line naming it."""
    from gpu_worker.schema import explain
    from tasks.settings import NarratorSettings

    try:
        return NarratorSettings(**overrides)
    except ValidationError as e:
        fail(f"invalid settings: {explain(e)}")


def worker_settings() -> Any:
    from flows.services import current_settings

    try:
        return current_settings()[1]
    except ValidationError as e:
        from gpu_worker.schema import explain

        fail(f"invalid settings: {explain(e)}")


@contextmanager
def prefect_console(verbose: bool) -> Iterator[None]:
    """Prefect's settings for a command's run: no analytics, a temporary server given time
    to start on a busy machine, and (unless `verbose`) a console kept to warnings."""
    from prefect.settings import (
        PREFECT_SERVER_ANALYTICS_ENABLED,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        PREFECT_SERVER_LOGGING_LEVEL,
        temporary_settings,
    )

    updates: dict[Any, Any] = {
        PREFECT_SERVER_ANALYTICS_ENABLED: False,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: max(
            90, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
        ),
    }
    if not verbose:
        _quiet_console()
        # The temporary server (started when no PREFECT_API_URL is set) logs event-flush
        # tracebacks when it is stopped at exit; a real server is not affected by this.
        updates[PREFECT_SERVER_LOGGING_LEVEL] = "CRITICAL"
    with temporary_settings(updates=updates):
        yield


def _quiet_console() -> None:
    """Keep Prefect's console output to warnings, without the tracebacks of our own errors
    (the command prints those as one line); its API log handler still gets everything."""
    from prefect.logging.handlers import PrefectConsoleHandler

    from gpu_worker.errors import NarratorError

    def unexplained(record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], NarratorError):
            return False
        # a failed task's closing line: the command says which chunk or step failed and why
        return not record.getMessage().startswith("Finished in state Failed")

    for logger in (logging.getLogger(), *map(logging.getLogger, ("uvicorn", "fastapi"))):
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler):
                handler.setLevel(logging.WARNING)
                handler.addFilter(unexplained)


def read_option_file(option: str, path: Path | None, read: Callable[[str, str], Any]) -> Any:
    """`read(text, name)` of the TOML file an option names (None when not given); a file
    that cannot be read or is refused is the command's one-line error."""
    from gpu_worker.errors import NarratorError

    if path is None:
        return None
    try:
        return read(path.read_text(encoding="utf-8"), str(path))
    except OSError as e:
        fail(f"{option} {path}: {e.strerror or e}")
    except NarratorError as e:
        fail(str(e))
