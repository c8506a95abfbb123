"""The prepare-text task: one chapter located, decoded, normalised and split into chunks."""

from dataclasses import dataclass, field, replace

from prefect import get_run_logger, task

from tasks.text.chunking import Chunk, ChunkingOptions, make_chunks
from tasks.text.decode import read_chapter, unreadable_words
from tasks.text.lexicon import Lexicon, lexicon_for, respell, respellings_in


@dataclass(frozen=True)
class PreparedText:
    source: str  # where the chapter came from
    text: str  # the decoded source; chunk spans index into it
    chunks: list[Chunk]  # their text respelled by the lexicon
    lexicon: Lexicon = field(default_factory=dict)  # what the chapter was read with

    @property
    def word_count(self) -> int:
        return sum(len(c.text.split()) for c in self.chunks)


@task(name="prepare-text")
def prepare_text(
    source: str,
    options: ChunkingOptions,
    max_bytes: int,
    endpoint_url: str | None = None,
    speakers: list[str] | None = None,
    lexicon: Lexicon | None = None,
) -> PreparedText:
    """Locate, decode, normalise and split one chapter (a dialogue, given its speakers),
    each chunk's words respelled by its lexicon (`lexicon.toml` beside it, `lexicon` over
    that)."""
    text = read_chapter(source, max_bytes, endpoint_url)
    words = lexicon_for(source, lexicon, endpoint_url)
    chunks = []
    for chunk in make_chunks(text, options, speakers or ()):
        said = respell(chunk.text, words)
        chunks.append(replace(chunk, text=said, respellings=respellings_in(said, words)))
    prepared = PreparedText(source, text, chunks, words)
    if left_out := unreadable_words(text):
        get_run_logger().warning(
            "%d words are in scripts the engines cannot read and are left out of the speech "
            "(the subtitles keep them): %s",
            len(left_out),
            ", ".join(sorted(set(left_out))[:20]),
        )
    return prepared
