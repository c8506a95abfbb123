"""The `narrator` command.

    narrator run CHAPTER [--out DIR] [options]     narrate one chapter file      (run.py)
    narrator voices add|list|show|remove           the voice library             (voices.py)
    narrator words CHAPTER                         names and rare words to check (words.py)
    narrator book plan|run BOOK                    an EPUB or DOCX into one M4B  (book.py)
    narrator review OUT_DIR                        a page to hear, redo and keep chunks
    narrator redo OUT_DIR --chunks 12,40           new takes of those chunks  (review.py)
    narrator serve                                 the speech API, OpenAI-compatible (serve.py)
    narrator endpoint                              a local RunPod-compatible endpoint
    narrator stack                                 Prefect server, deployments and a worker
                                                                                 (servers.py)

Run options become the flow's parameters (`NarrationOptions`); --workers, --cache-dir and
--backend override the matching NARRATOR_* settings for this run (common.py builds the
settings; the flow receives them through flows.services.configured). Prefect is imported
when a command runs; its console output is kept to warnings unless --verbose (the bar shows
progress, and every log line still reaches the Prefect API for the UI).
"""

from flows.cli import book, review, run, serve, servers, voices, words
from flows.cli.common import app

__all__ = ["app", "book", "main", "review", "run", "serve", "servers", "voices", "words"]


def main() -> None:
    app(prog_name="narrator")
