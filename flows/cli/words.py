"""`narrator words CHAPTER`: the names and rare words a pronunciation lexicon may need."""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from flows.cli.common import app, fail, narrator_settings, read_option_file


@app.command("words")
def words(
    chapter: Annotated[
        str, typer.Argument(help="The chapter: a text, markdown or HTML file, or s3:// URI.")
    ],
    lexicon: Annotated[
        Path | None,
        typer.Option(
            "--lexicon", help="A lexicon to show respellings from (TOML).", show_default=False
        ),
    ] = None,
    top: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 60,
) -> None:
    """List the chapter's names and rare words, most frequent first, with the respelling
    each has in the lexicon (lexicon.toml beside the chapter, then --lexicon). Listen to
    how the narration says them; add the ones it gets wrong to lexicon.toml as
    Word = "respelling", and rerun: only the chunks holding them are generated again."""
    from gpu_worker.errors import NarratorError
    from tasks.text import ChunkingOptions, make_chunks, read_chapter
    from tasks.text.lexicon import candidates, lexicon_for, read_lexicon

    settings = narrator_settings()
    try:
        given = read_option_file("--lexicon", lexicon, read_lexicon)
        text = read_chapter(chapter, settings.max_chapter_bytes, settings.s3_endpoint_url)
        entries = lexicon_for(chapter, given, settings.s3_endpoint_url)
    except NarratorError as e:
        fail(str(e))
    chunks = make_chunks(text, ChunkingOptions())
    found = candidates([c.display for c in chunks])
    folded = {key.casefold(): said for key, said in entries.items()}
    out = Console(soft_wrap=True, highlight=False)
    if not found:
        out.print("no names or rare words found")
        return
    out.print(f"[bold]{'word':<24} {'count':>5}  {'kind':<5}  in the lexicon[/]")
    for candidate in found[:top]:
        said = folded.get(candidate.word.casefold())
        shown = f'= "{said}"' if said else ""
        out.print(f"{candidate.word:<24} {candidate.count:>5}  {candidate.kind:<5}  {shown}")
    if len(found) > top:
        out.print(f"... and {len(found) - top} more (--top)")
