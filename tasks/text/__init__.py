"""Phase 1: a chapter file becomes chunks a TTS model reads well.

    decode.py     bytes -> text
    blocks.py     text -> blocks, inline markup removed with source offsets kept
    chunking.py   blocks -> chunks
    prepare.py    the prepare-text task: all three for one chapter

    decode_chapter   bytes -> text (UTF-8, BOM and CRLF fine; UTF-16 with a BOM accepted)
    parse_blocks     text -> headings, paragraphs and scene breaks (markdown aware)
    make_chunks      blocks -> chunks: sentence-aware, near `target_chars`, never over
                     `max_chars`, each with the break after it and its span in the source

Inline markup is removed into a "clean" text that remembers, for every character, where it
came from; sentences are split on that clean text and only then verbalised (spoken.py), so
spans always point into the source and lengths are measured on what the engine will read.
Spans are character offsets into the decoded text (newlines normalised to "\\n").
"""

from tasks.text.blocks import Block, clean_inline, parse_blocks
from tasks.text.chunking import Break, Chunk, ChunkingOptions, make_chunks, split_sentences
from tasks.text.decode import decode_chapter, html_to_text, read_chapter, unreadable_words
from tasks.text.prepare import PreparedText, prepare_text

__all__ = [
    "Block",
    "Break",
    "Chunk",
    "ChunkingOptions",
    "PreparedText",
    "clean_inline",
    "decode_chapter",
    "html_to_text",
    "make_chunks",
    "parse_blocks",
    "prepare_text",
    "read_chapter",
    "split_sentences",
    "unreadable_words",
]
