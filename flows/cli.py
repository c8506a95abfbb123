"""The `narrator` command.

    narrator run CHAPTER [--out DIR] [options]     narrate one chapter file
    narrator endpoint                              a local RunPod-compatible endpoint
    narrator stack                                 Prefect server, deployments and a worker

Run options become the flow's parameters (`NarrationOptions`); --workers and --cache-dir
override the matching NARRATOR_* settings for this run. Prefect is imported when a
command runs; its console output is kept to warnings unless --verbose (the bar shows
progress, and every log line still reaches the Prefect API for the UI).
"""

import json
import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gpu_worker.schema import GenerationParams, explain
from tasks.audio import AudioOptions
from tasks.text import ChunkingOptions

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


def _default(model: type[BaseModel], name: str) -> Any:
    return model.model_fields[name].default


def _help(model: type[BaseModel], name: str) -> str:
    return model.model_fields[name].description or ""


def _opt(model: type[BaseModel], name: str, *flags: str, **kw: Any) -> Any:
    return typer.Option(*flags, help=_help(model, name), show_default=True, **kw)


class _Bar:
    """Progress (flows.chapter.Progress) drawn with rich."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("preparing text", total=None, cached=0)
        self.cached = 0

    def planned(self, total: int) -> None:
        self.progress.update(self.task, description="generating chunks", total=total)

    def finished(self, outcome: Any) -> None:
        self.cached += outcome.cached
        self.progress.update(self.task, advance=1, cached=self.cached)
        if outcome.error:
            self.progress.console.print(
                f"[red]chunk {outcome.job.index} failed:[/] {outcome.error}"
            )
        elif self.progress.tasks[self.task].completed == self.progress.tasks[self.task].total:
            self.progress.update(self.task, description="joining and checking")


@app.command()
def run(
    chapter: Annotated[
        str,
        typer.Argument(
            help="Chapter file, UTF-8 plain text or markdown: a path or an s3://bucket/key.",
            show_default=False,
        ),
    ],
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            "-o",
            help="Output folder or s3://bucket/prefix (default: out/<chapter name>)",
            show_default=False,
        ),
    ] = None,
    voice: Annotated[
        str | None,
        typer.Option(
            help="A built-in voice (the embedded engine has 'heart', the default, and "
            "'joe'), or a reference clip to clone (Chatterbox engine)",
            show_default=False,
        ),
    ] = None,
    cast: Annotated[
        Path | None,
        typer.Option(
            "--cast",
            help="A dialogue's cast file (TOML): the narrator's and each speaker's voice. "
            "Lines tagged 'NAME: ...' or '[Name] ...' are read by that speaker.",
            show_default=False,
        ),
    ] = None,
    candidates: Annotated[
        int, _opt(GenerationParams, "n_candidates", "--candidates", "-n", min=1, max=10)
    ] = _default(GenerationParams, "n_candidates"),
    threshold: Annotated[
        float, _opt(GenerationParams, "whisper_threshold", "--threshold", min=0, max=100)
    ] = _default(GenerationParams, "whisper_threshold"),
    max_retries: Annotated[
        int, _opt(GenerationParams, "max_retries", "--max-retries", min=0, max=10)
    ] = _default(GenerationParams, "max_retries"),
    seed: Annotated[int, _opt(GenerationParams, "seed", "--seed", min=0)] = 0,
    accept_score: Annotated[
        float | None,
        _opt(GenerationParams, "accept_score", "--accept-score", min=0, max=100),
    ] = None,
    target_chars: Annotated[
        int, _opt(ChunkingOptions, "target_chars", "--target-chars")
    ] = _default(ChunkingOptions, "target_chars"),
    max_chars: Annotated[int, _opt(ChunkingOptions, "max_chars", "--max-chars")] = _default(
        ChunkingOptions, "max_chars"
    ),
    sentence_pause: Annotated[
        float, _opt(AudioOptions, "sentence_pause", "--sentence-pause", min=0)
    ] = _default(AudioOptions, "sentence_pause"),
    turn_pause: Annotated[
        float, _opt(AudioOptions, "turn_pause", "--turn-pause", min=0)
    ] = _default(AudioOptions, "turn_pause"),
    paragraph_pause: Annotated[
        float, _opt(AudioOptions, "paragraph_pause", "--paragraph-pause", min=0)
    ] = _default(AudioOptions, "paragraph_pause"),
    section_pause: Annotated[
        float, _opt(AudioOptions, "section_pause", "--section-pause", min=0)
    ] = _default(AudioOptions, "section_pause"),
    on_low_score: Annotated[
        str,
        typer.Option(
            help="A chunk whose best candidate stays below "
            "the threshold: 'flag' keeps it and lists it in the metadata, "
            "'fail' fails the run."
        ),
    ] = "flag",
    loudness: Annotated[
        str,
        typer.Option(
            help="Loudness preset: audiobook (-18 LUFS, peaks under -3 dBTP, as ACX "
            "asks), podcast (-16 LUFS, -1 dBTP) or off."
        ),
    ] = "audiobook",
    formats: Annotated[
        str,
        typer.Option(
            help="Delivery formats made beside the WAV, comma-separated: mp3, m4b "
            "(with chapter markers at headings); empty for none."
        ),
    ] = "mp3,m4b",
    validate: Annotated[
        bool,
        typer.Option(
            "--validate/--no-validate",
            help="Re-hear the finished chapter and flag chunks that went wrong (validation.json).",
        ),
    ] = True,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Regenerate every chunk, ignoring the cache.")
    ] = False,
    backend: Annotated[
        str | None,
        typer.Option(
            help="Where chunks are generated: local (this machine) or runpod "
            "(NARRATOR_RUNPOD_* settings) (default: NARRATOR_BACKEND, else local)",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Chunks generated at once by the local "
            "backend (default: NARRATOR_LOCAL_WORKERS, else 2)",
            min=1,
            show_default=False,
        ),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            help="Chunk cache folder (default: NARRATOR_CACHE_DIR, else ~/.cache/narrator/chunks)",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Show Prefect's log lines (per task: attempts, scores, retries).",
        ),
    ] = False,
) -> None:
    """Narrate one chapter: WAV, MP3, M4B, SRT and VTT subtitles, metadata.json,
    segments.json and validation.json."""
    if on_low_score not in ("flag", "fail"):
        _fail(f"--on-low-score must be 'flag' or 'fail', not {on_low_score!r}")
    if backend not in (None, "local", "runpod"):
        _fail(f"--backend must be 'local' or 'runpod', not {backend!r}")
    overrides = {
        "NARRATOR_LOCAL_WORKERS": workers,
        "NARRATOR_CACHE_DIR": cache_dir,
        "NARRATOR_BACKEND": backend,
    }
    os.environ.update({k: str(v) for k, v in overrides.items() if v is not None})
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not verbose:
        _quiet_console()
        # The temporary server (started when no PREFECT_API_URL is set) logs event-flush
        # tracebacks when it is stopped at exit; a real server is not affected by this.
        os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
    try:
        options = _options(
            generation=GenerationParams(
                n_candidates=candidates,
                whisper_threshold=threshold,
                max_retries=max_retries,
                seed=seed,
                accept_score=accept_score,
            ),
            chunking=ChunkingOptions(target_chars=target_chars, max_chars=max_chars),
            audio=AudioOptions(
                sentence_pause=sentence_pause,
                turn_pause=turn_pause,
                paragraph_pause=paragraph_pause,
                section_pause=section_pause,
            ),
            loudness={"preset": loudness},
            formats=[f.strip() for f in formats.split(",") if f.strip()],
            validate_chapter=validate,
            on_low_score=on_low_score,
            refresh_cache=refresh,
        )
    except ValidationError as e:
        _fail(f"invalid options: {explain(e)}")
    _narrate(chapter, out, voice, options, _cast(cast))


voices_app = typer.Typer(
    help="The voice library: reference clips kept under a name (NARRATOR_VOICE_LIBRARY, a "
    "folder or s3://bucket/prefix). `narrator run --voice NAME` and cast files use them.",
    no_args_is_help=True,
)
app.add_typer(voices_app, name="voices")


def _library() -> Any:
    from gpu_worker.settings import WorkerSettings
    from tasks.settings import NarratorSettings
    from tasks.voice_library import VoiceLibrary

    return VoiceLibrary(WorkerSettings().voice_library, NarratorSettings().s3_endpoint_url)


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
        _fail(f"{file}: {e.strerror or e}")
    try:
        voice = _library().add(name, data, str(file), replace=replace)
    except NarratorError as e:
        _fail(str(e))
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
        _fail(str(e))
    out = Console(soft_wrap=True, highlight=False)
    out.print(f"[bold]library[/] {library.location}")
    for voice in found:
        out.print(f"  {_voice_line(voice)}")
    if not found:
        out.print("  (empty: `narrator voices add NAME FILE`)")
    out.print(f"[bold]built in[/] {_built_in_voices()}")


def _built_in_voices() -> str:
    """The configured engine's own voices (the GPU engine's are not loaded just to list)."""
    from gpu_worker.settings import WorkerSettings

    settings = WorkerSettings()
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
        _fail(str(e))
    print(json.dumps({**voice.model_dump(), "clip": library.clip(name)}, indent=2))


@voices_app.command("remove")
def voices_remove(name: Annotated[str, typer.Argument(show_default=False)]) -> None:
    """Remove a voice from the library (chapters already made keep their audio)."""
    from gpu_worker.errors import NarratorError

    try:
        _library().remove(name)
    except NarratorError as e:
        _fail(str(e))
    err.print(f"removed {name}")


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

    from gpu_worker.settings import WorkerSettings
    from local_endpoint.faults import FaultProfile
    from local_endpoint.server import EndpointConfig, with_workers

    try:
        drill = FaultProfile.model_validate_json(faults) if faults else FaultProfile()
    except ValidationError as e:
        _fail(f"--faults: {explain(e)}")
    key = api_key or secrets.token_urlsafe(24)
    config = EndpointConfig(endpoint_id=endpoint_id, api_key=key, faults=drill)
    service = with_workers(config, WorkerSettings(), workers)
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
) -> None:
    """Run the local operations stack until Ctrl-C: a Prefect server with its UI, the
    `narrator` process work pool, the deployments in prefect.yaml (narrate-chapter and
    nightly-batch), and a worker that runs them from this checkout.

    The server keeps its database in PREFECT_HOME (~/.prefect); logs go to out/stack/.
    """
    import time

    from flows import stack as ops
    from gpu_worker.errors import NarratorError

    err.print(f"starting the Prefect server on 127.0.0.1:{port}, then deploying prefect.yaml")
    try:
        running = ops.start(port=port)
    except NarratorError as e:
        _fail(str(e))
    err.print(
        f"[bold]Prefect UI:[/] {running.ui_url}\n"
        f"  deployments: narrate-chapter (Run button), nightly-batch (02:00 daily)\n"
        f"  from a shell: PREFECT_API_URL={running.api_url} .venv/bin/prefect deployment run "
        "narrate-chapter/narrate-chapter -p source=samples/the-keeper-of-lantern-rock.md\n"
        f"  logs: {running.log_dir}/\n"
        "Ctrl-C stops the worker and the server.",
        highlight=False,
    )
    try:
        while all(p.poll() is None for p in running.processes):
            time.sleep(1)
        _fail(f"a stack process exited; see {running.log_dir}/")
    except KeyboardInterrupt:
        err.print("stopping")
    finally:
        running.stop()


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


def _options(**fields: Any) -> Any:
    from flows.chapter import NarrationOptions

    return NarrationOptions(**fields)


def _cast(path: Path | None) -> Any:
    from gpu_worker.errors import NarratorError
    from tasks.cast import read_cast

    if path is None:
        return None
    try:
        return read_cast(path.read_text(encoding="utf-8"), str(path))
    except OSError as e:
        _fail(f"--cast {path}: {e.strerror or e}")
    except NarratorError as e:
        _fail(str(e))


def _narrate(
    chapter: str, out: str | None, voice: str | None, options: Any, cast: Any = None
) -> None:
    from flows.chapter import listening, narrate_chapter
    from gpu_worker.errors import NarratorError

    columns = (
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("chunks, {task.fields[cached]} cached"),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=err, transient=True) as progress, listening(_Bar(progress)):
            result = narrate_chapter(chapter, out, voice, options, cast)
    except NarratorError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        _fail("interrupted; chunks already generated are cached and a rerun reuses them")
    _summary(result)


def _summary(result: Any) -> None:
    """What was made and where: plain lines, never truncated, so paths can be copied."""
    folder = result.audio.rsplit("/", 1)[0]
    rows = [
        (
            "audio",
            f"{result.audio}  ({result.duration_seconds / 60:.1f} min, "
            f"{result.integrated_lufs:.1f} LUFS)",
        ),
        ("also", ", ".join(f.rsplit("/", 1)[-1] for f in result.files if f != result.audio)),
        ("chunks", f"{result.chunks} ({result.cache_hits} from cache)"),
    ]
    if result.wer is not None:
        rows.append(
            ("re-heard", f"{100 * result.wer:.1f} % word error rate over the whole chapter")
        )
    if result.flagged:
        rows.append(
            (
                "flagged",
                f"chunks {result.flagged}: below the threshold after every retry (metadata.json)",
            )
        )
    if result.validation_flagged:
        rows.append(
            (
                "flagged",
                f"chunks {result.validation_flagged}: the whole-chapter check "
                "heard a problem (validation.json)",
            )
        )
    out = Console(soft_wrap=True, highlight=False)
    out.print(f"[bold]{'folder':<10}[/] {folder}")
    for label, value in rows:
        style = "yellow" if label == "flagged" else "bold"
        out.print(f"[{style}]{label:<10}[/] {value}")


def _fail(message: str) -> None:
    err.print(f"[bold red]narrator:[/] {message}", highlight=False)
    raise typer.Exit(1)


def main() -> None:
    app(prog_name="narrator")


if __name__ == "__main__":
    main()
