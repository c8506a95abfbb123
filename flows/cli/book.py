"""`narrator book plan|run`: a whole book (EPUB or DOCX) planned, then narrated into one M4B."""

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flows.cli.common import (
    Backend,
    CacheDir,
    Verbose,
    app,
    command_settings,
    default,
    err,
    fail,
    narrator_settings,
    opt,
    prefect_console,
)
from gpu_worker.schema import GenerationParams

book_app = typer.Typer(
    help="Books: `plan` what an EPUB or DOCX would cost, `run` it into one M4B.",
    no_args_is_help=True,
)
app.add_typer(book_app, name="book")

BookArg = Annotated[
    str,
    typer.Argument(
        help="The book: an .epub or .docx file, a path or s3://bucket/key.", show_default=False
    ),
]
Chapters = Annotated[
    str | None,
    typer.Option(
        "--chapters",
        help="Chapters by number as `book plan` lists them, e.g. 3-7,9 (default: every "
        "chapter that is not front or back matter)",
        show_default=False,
    ),
]
IncludeMatter = Annotated[
    bool,
    typer.Option(
        "--include-matter", help="Also narrate the cover, copyright, contents and index pages."
    ),
]
Candidates = Annotated[
    int, opt(GenerationParams, "n_candidates", "--candidates", "-n", min=1, max=10)
]
N_CANDIDATES = default(GenerationParams, "n_candidates")


def _read(book: str, chapters: str | None, include_matter: bool) -> tuple[Any, list[Any]]:
    from gpu_worker.errors import NarratorError
    from tasks.book import read_book

    settings = narrator_settings()
    try:
        read = read_book(book, settings.s3_endpoint_url)
        return read, read.select(chapters, include_matter)
    except NarratorError as e:
        fail(str(e))


@book_app.command()
def plan(
    book: BookArg,
    chapters: Chapters = None,
    include_matter: IncludeMatter = False,
    candidates: Candidates = N_CANDIDATES,
) -> None:
    """List the book's chapters with their words, minutes of audio, and GPU time and cost
    on the RunPod fleet (NARRATOR_GPU_PRICE_PER_HOUR); then what would be skipped."""
    from tasks.book.plan import estimate

    read, chosen = _read(book, chapters, include_matter)
    price = narrator_settings().gpu_price_per_hour
    table = Table(title=f"{read.title}" + (f" by {read.author}" if read.author else ""))
    for column in ("#", "chapter", "words", "minutes", "GPU s", "cost"):
        table.add_column(column, justify="left" if column == "chapter" else "right")
    for chapter in chosen:
        e = estimate([chapter], candidates, price)
        table.add_row(
            str(chapter.number),
            chapter.title,
            f"{e.words:,}",
            f"{e.minutes:.1f}",
            f"{e.gpu_seconds:,.0f}",
            f"${e.cost:.2f}",
        )
    total = estimate(chosen, candidates, price)
    table.add_row(
        "",
        f"[bold]{len(chosen)} chapters",
        f"{total.words:,}",
        f"{total.minutes:.1f}",
        f"{total.gpu_seconds:,.0f}",
        f"${total.cost:.2f}",
    )
    out = Console(soft_wrap=True, highlight=False)
    out.print(table)
    skipped = [c for c in read.chapters if c not in chosen]
    if skipped:
        out.print("[bold]skipped[/] (select with --chapters or --include-matter):")
        for chapter in skipped:
            why = chapter.matter or "not selected"
            out.print(f"  {chapter.number:>3}  {chapter.title}  ({why}, {chapter.location})")
    out.print(
        f"at {candidates} candidate(s) per chunk and ${price:.2f} per GPU hour; "
        "a run reuses every chunk already in the cache"
    )


class _BookBar:
    """Progress over every chapter's chunks (flows.map_chunks.Progress), drawn with rich."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("narrating chapters", total=0, cached=0)
        self.cached = 0

    def planned(self, total: int) -> None:
        self.progress.update(self.task, total=(self.progress.tasks[self.task].total or 0) + total)

    def finished(self, outcome: Any) -> None:
        self.cached += outcome.cached
        self.progress.update(self.task, advance=1, cached=self.cached)
        if outcome.error:
            self.progress.console.print(
                f"[red]chunk {outcome.job.index} failed:[/] {outcome.error}"
            )


@book_app.command()
def run(
    book: BookArg,
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Output folder: chapters, the M4B, the ACX package"),
    ],
    chapters: Chapters = None,
    include_matter: IncludeMatter = False,
    voice: Annotated[
        str | None,
        typer.Option(
            help="A built-in or library voice, or a reference clip, for every chapter",
            show_default=False,
        ),
    ] = None,
    cast: Annotated[
        Path | None,
        typer.Option(help="A dialogue's cast file (TOML), for every chapter", show_default=False),
    ] = None,
    lexicon: Annotated[
        Path | None,
        typer.Option(help="How to say names and rare words (TOML)", show_default=False),
    ] = None,
    candidates: Candidates = N_CANDIDATES,
    validate: Annotated[
        bool,
        typer.Option(
            "--validate/--no-validate", help="Re-hear each finished chapter (validation.json)."
        ),
    ] = True,
    acx: Annotated[
        bool,
        typer.Option(
            "--acx",
            help="Also make an ACX package in OUT/acx/: an MP3 per chapter with room tone, "
            "opening and closing credits, a retail sample, and the checks' report.",
        ),
    ] = False,
    narrator: Annotated[
        str | None, typer.Option(help="Narrator's name: tags and credits", show_default=False)
    ] = None,
    series: Annotated[str | None, typer.Option(help="Series name tag", show_default=False)] = None,
    series_position: Annotated[
        str | None, typer.Option(help="The book's number in the series", show_default=False)
    ] = None,
    genre: Annotated[str, typer.Option(help="Genre tag")] = "Audiobook",
    year: Annotated[
        str | None, typer.Option(help="Year tag (default: the book's)", show_default=False)
    ] = None,
    max_in_flight: Annotated[int, typer.Option(help="Chapters narrated at once", min=1, max=8)] = 2,
    backend: Backend = None,
    cache_dir: CacheDir = None,
    verbose: Verbose = False,
) -> None:
    """Narrate the book's chapters (each one current is skipped, an edited one regenerates
    only its changed chunks) and assemble OUT/<book>.m4b: a marker per chapter, the
    cover and the tags."""
    from flows.book import narrate_book
    from flows.chapter import listening
    from flows.cli.run import _cast, _lexicon, _options
    from flows.services import configured
    from gpu_worker.errors import NarratorError
    from gpu_worker.redaction import no_credentials
    from tasks.book.audiobook import BookTags

    settings, worker = command_settings(backend, cache_dir)
    _read(book, chapters, include_matter)  # a bad book or --chapters: one line, no server
    if voice:
        try:
            no_credentials(voice)
        except ValueError as e:
            fail(f"--voice: {e}")
    options = _options(  # the book's M4B is the delivery: no MP3/M4B per chapter
        generation=GenerationParams(n_candidates=candidates), validate_chapter=validate, formats=[]
    )
    tags = BookTags(
        narrator=narrator, series=series, series_position=series_position, genre=genre, year=year
    )
    words, roles = _lexicon(lexicon), _cast(cast)
    columns = (
        TextColumn("{task.description:<20}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("chunks, {task.fields[cached]} cached"),
        TimeElapsedColumn(),
    )
    try:
        with (
            configured(settings, worker),
            prefect_console(verbose),
            Progress(*columns, console=err, transient=True) as progress,
            listening(_BookBar(progress)),
        ):
            result = narrate_book(
                book,
                str(out),
                chapters,
                include_matter,
                voice,
                options,
                max_in_flight,
                words,
                roles,
                tags,
                acx,
            )
    except NarratorError as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail("stopped; chunks already generated are cached and a rerun reuses them")
    console = Console(soft_wrap=True, highlight=False)
    console.print(f"[bold]{'audiobook':<10}[/] {result.audiobook}")
    batch = result.batch
    console.print(
        f"[bold]{'chapters':<10}[/] {len(result.chapters)} ({len(batch.narrated)} narrated now, "
        f"{len(batch.skipped)} already current)"
    )
    if result.acx_report:
        console.print(f"[bold]{'acx':<10}[/] {result.acx_report}")
