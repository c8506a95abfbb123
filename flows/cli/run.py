"""`narrator run`: one chapter narrated, with a progress bar and a summary of what was made."""

import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flows.cli.common import (
    app,
    command_settings,
    default,
    err,
    fail,
    opt,
    prefect_console,
    read_option_file,
)
from gpu_worker.redaction import no_credentials
from gpu_worker.schema import GenerationParams, explain
from tasks.audio import AudioOptions
from tasks.text import ChunkingOptions


class _Bar:
    """Progress (flows.map_chunks.Progress) drawn with rich."""

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
            "'joe'), a library voice, or a reference clip to clone (Chatterbox engine): a "
            "public URL, an s3:// URI or a path, never a presigned URL",
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
    lexicon: Annotated[
        Path | None,
        typer.Option(
            "--lexicon",
            help='How to say names and rare words (TOML: Hermione = "Her-my-oh-nee"), '
            "over the lexicon.toml beside the chapter. `narrator words CHAPTER` lists "
            "candidates.",
            show_default=False,
        ),
    ] = None,
    candidates: Annotated[
        int, opt(GenerationParams, "n_candidates", "--candidates", "-n", min=1, max=10)
    ] = default(GenerationParams, "n_candidates"),
    threshold: Annotated[
        float, opt(GenerationParams, "whisper_threshold", "--threshold", min=0, max=100)
    ] = default(GenerationParams, "whisper_threshold"),
    max_retries: Annotated[
        int, opt(GenerationParams, "max_retries", "--max-retries", min=0, max=10)
    ] = default(GenerationParams, "max_retries"),
    seed: Annotated[int, opt(GenerationParams, "seed", "--seed", min=0)] = 0,
    accept_score: Annotated[
        float | None,
        opt(GenerationParams, "accept_score", "--accept-score", min=0, max=100),
    ] = None,
    target_chars: Annotated[int, opt(ChunkingOptions, "target_chars", "--target-chars")] = default(
        ChunkingOptions, "target_chars"
    ),
    max_chars: Annotated[int, opt(ChunkingOptions, "max_chars", "--max-chars")] = default(
        ChunkingOptions, "max_chars"
    ),
    sentence_pause: Annotated[
        float, opt(AudioOptions, "sentence_pause", "--sentence-pause", min=0)
    ] = default(AudioOptions, "sentence_pause"),
    turn_pause: Annotated[float, opt(AudioOptions, "turn_pause", "--turn-pause", min=0)] = default(
        AudioOptions, "turn_pause"
    ),
    paragraph_pause: Annotated[
        float, opt(AudioOptions, "paragraph_pause", "--paragraph-pause", min=0)
    ] = default(AudioOptions, "paragraph_pause"),
    section_pause: Annotated[
        float, opt(AudioOptions, "section_pause", "--section-pause", min=0)
    ] = default(AudioOptions, "section_pause"),
    speed: Annotated[float, opt(AudioOptions, "speed", "--speed", min=0.5, max=2.0)] = default(
        AudioOptions, "speed"
    ),
    footnotes: Annotated[
        str,
        typer.Option(
            help="Footnotes: 'skip' them, or 'after_paragraph': read each after the "
            "paragraph that first refers to it."
        ),
    ] = "skip",
    spelling: Annotated[
        str,
        typer.Option(
            help="Spelling of the units the normaliser writes: 'american' (kilometer) or "
            "'british' (kilometre, litre)."
        ),
    ] = "american",
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
            help="Where chunks are generated: local (this machine), runpod "
            "(NARRATOR_RUNPOD_* settings) or elevenlabs (NARRATOR_ELEVENLABS_*; --voice is "
            "a voice id) (default: NARRATOR_BACKEND, else local)",
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
        fail(f"--on-low-score must be 'flag' or 'fail', not {on_low_score!r}")
    settings, worker = command_settings(backend, cache_dir, local_workers=workers)
    try:
        options = _options(
            generation=GenerationParams(
                n_candidates=candidates,
                whisper_threshold=threshold,
                max_retries=max_retries,
                seed=seed,
                accept_score=accept_score,
            ),
            chunking=ChunkingOptions(
                target_chars=target_chars,
                max_chars=max_chars,
                footnotes=footnotes,
                spelling=spelling,
            ),
            audio=AudioOptions(
                sentence_pause=sentence_pause,
                turn_pause=turn_pause,
                paragraph_pause=paragraph_pause,
                section_pause=section_pause,
                speed=speed,
            ),
            loudness={"preset": loudness},
            formats=[f.strip() for f in formats.split(",") if f.strip()],
            validate_chapter=validate,
            on_low_score=on_low_score,
            refresh_cache=refresh,
        )
    except ValidationError as e:
        fail(f"invalid options: {explain(e)}")
    if voice:
        try:  # before the run exists: Prefect stores and shows its parameters
            no_credentials(voice)
        except ValueError as e:
            fail(f"--voice: {e}")
    words = _lexicon(lexicon)
    _narrate(chapter, out, voice, options, _cast(cast), words, (settings, worker), verbose)


def _options(**fields: Any) -> Any:
    from flows.chapter import NarrationOptions

    return NarrationOptions(**fields)


def _cast(path: Path | None) -> Any:
    from tasks.cast import read_cast

    return read_option_file("--cast", path, read_cast)


def _lexicon(path: Path | None) -> Any:
    from tasks.text.lexicon import read_lexicon

    return read_option_file("--lexicon", path, read_lexicon)


def _narrate(
    chapter: str,
    out: str | None,
    voice: str | None,
    options: Any,
    cast: Any,
    lexicon: Any,
    settings: Any,
    verbose: bool,
) -> None:
    from prefect.exceptions import TerminationSignal

    from flows.chapter import listening, narrate_chapter
    from flows.services import configured
    from gpu_worker.errors import NarratorError

    # a supervisor's SIGTERM stops the run as Ctrl-C does: remote jobs cancelled, the
    # temporary Prefect server stopped at exit, exit status 1
    previous = signal.signal(signal.SIGTERM, _interrupt)
    columns = (
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("chunks, {task.fields[cached]} cached"),
        TimeElapsedColumn(),
    )
    try:
        with (
            configured(*settings),
            prefect_console(verbose),
            Progress(*columns, console=err, transient=True) as progress,
            listening(_Bar(progress)),
        ):
            result = narrate_chapter(chapter, out, voice, options, cast, lexicon)
    except NarratorError as e:
        fail(str(e))
    except (KeyboardInterrupt, TerminationSignal):
        from tasks.backends import stop_backends

        stop_backends(within=2.0)
        fail(
            "stopped; jobs still on the endpoint were cancelled, chunks already generated "
            "are cached and a rerun reuses them"
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    _summary(result)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


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
    rows.append(("review", f"narrator review {folder}  (hear each chunk, redo or keep takes)"))
    out = Console(soft_wrap=True, highlight=False)
    out.print(f"[bold]{'folder':<10}[/] {folder}")
    for label, value in rows:
        style = "yellow" if label == "flagged" else "bold"
        out.print(f"[{style}]{label:<10}[/] {value}")
