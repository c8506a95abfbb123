"""narrate_batch: every chapter in a folder or S3 prefix, the nightly way.

Each chapter is a `narrate_chapter` subflow in this process, or, with `chapter_deployment`,
a flow run of that deployment on any worker (flows/fan_out.py); at most `max_in_flight` at
once (a chapter maps one task per chunk; a batch must not map thousands at once). A chapter
whose published metadata carries the fingerprint it would get now (same text, options,
engine, voice, version) is skipped. One failing chapter does not stop the others: the batch
ends Failed naming the chapters that failed and why.
"""

import contextvars
import hashlib
import json
import re
import typing
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.states import State
from pydantic import BaseModel, Field

from flows.chapter import narrate_chapter
from flows.fan_out import run_chapters
from flows.parameters import checked_flow
from flows.services import services
from gpu_worker.errors import NarratorError, PermanentError
from gpu_worker.redaction import CredentialFree
from tasks.book import is_book
from tasks.cast import Cast
from tasks.options import NarrationOptions
from tasks.outputs import published_problem
from tasks.reports import fingerprint
from tasks.settings import NarratorSettings
from tasks.storage import join, list_sources, output_stem, read_text_if_exists, same_folder
from tasks.text import read_chapter
from tasks.text.lexicon import Lexicon, lexicon_for
from tasks.voice_resolution import resolve

MAX_IN_FLIGHT = 8


class BatchResult(BaseModel):
    narrated: list[str] = Field(description="Chapters narrated in this run.")
    skipped: list[str] = Field(description="Chapters whose outputs were already current.")
    failed: dict[str, str] = Field(description="Chapters that failed, and why.")


def is_current(
    source: str,
    out: str,
    options: NarrationOptions,
    identity: str,
    voice: str | None,
    settings: NarratorSettings,
    lexicon: Lexicon | None = None,
) -> bool:
    """Whether `out` holds the outputs `source` would get now, whole (tasks/outputs.py)."""
    try:
        if published_problem(out, settings.s3_endpoint_url) is not None:
            return False
    except NarratorError:
        return False  # cannot tell now: the chapter's run says why
    published = read_text_if_exists(join(out, "metadata.json"), settings.s3_endpoint_url)
    if published is None:
        return False
    try:
        text = read_chapter(source, settings.max_chapter_bytes, settings.s3_endpoint_url)
        words = lexicon_for(source, lexicon, settings.s3_endpoint_url)
        digest = hashlib.sha256(text.encode()).hexdigest()
        expected = fingerprint(digest, options, identity, voice, None, words)
        return bool(json.loads(published).get("fingerprint") == expected)
    except (NarratorError, ValueError):
        return False  # unreadable now: let the chapter run say why


def sharing_a_folder(chapters: list[str]) -> dict[str, str]:
    """Chapters whose names would give them one output folder (`Chapter 1` and `Chapter-1`,
    or two names that differ only in case), each with why: none of them is narrated, so no
    chapter's outputs overwrite another's."""
    stems = {c: output_stem(c) for c in chapters}
    clashes = {}
    for chapter in chapters:
        others = [o for o in chapters if o != chapter and same_folder(stems[o], stems[chapter])]
        if others:
            clashes[chapter] = (
                f"would share the output folder {stems[chapter]!r} with "
                + ", ".join(others)
                + "; rename one of them"
            )
    return clashes


def _chapter(
    source: str,
    out: str,
    voice: str | None,
    options: NarrationOptions,
    lexicon: Lexicon | None,
    cast: Cast | None,
) -> State[Any]:
    """One chapter as a subflow of the batch, its final state returned (never raised)."""
    state = narrate_chapter(source, out, voice, options, cast, lexicon, return_state=True)
    return typing.cast(State[Any], state)


def _in_process(
    chapters: list[str],
    outputs: dict[str, str],
    voice: str | None,
    options: NarrationOptions,
    lexicon: Lexicon | None,
    cast: Cast | None,
    max_in_flight: int,
) -> dict[str, State[Any]]:
    """Each chapter as a subflow in a thread of this process, `max_in_flight` at once."""
    with ThreadPoolExecutor(max_in_flight, thread_name_prefix="chapter") as pool:
        futures = {
            c: pool.submit(
                contextvars.copy_context().run,
                _chapter,
                c,
                outputs[c],
                voice,
                options,
                lexicon,
                cast,
            )
            for c in chapters
        }
        return {c: f.result() for c, f in futures.items()}


def reason(state: State[Any]) -> str:
    """Why a subflow failed, as its error said it (without Prefect's preamble and the
    exception's class name)."""
    message = str(state.message or state.name)
    message = message.removeprefix("Flow run encountered an exception: ")
    return re.sub(r"^[A-Z]\w*(?:Error|Exception): ", "", message)


@checked_flow(name="narrate-batch")
def narrate_batch(
    source: str,
    out_dir: str,
    pattern: str = "*.md",
    voice: CredentialFree | None = None,
    options: NarrationOptions = NarrationOptions(),  # noqa: B008 - frozen, shown in the UI
    max_in_flight: Annotated[int, Field(ge=1, le=MAX_IN_FLIGHT)] = 2,
    lexicon: Lexicon | None = None,
    cast: Cast | None = None,
    chapter_deployment: str | None = None,
) -> BatchResult:
    """Narrate every chapter matching `pattern` in `source` (a folder or s3://bucket/prefix)
    into `out_dir`/<chapter name>/, skipping chapters whose outputs are current. A book
    (.epub, .docx) as `source` is narrated chapter by chapter and assembled (flows/book.py).

    Args:
        source: Folder or s3://bucket/prefix holding the chapter files.
        out_dir: Folder or s3://bucket/prefix; each chapter goes in its own subfolder.
        pattern: Which files are chapters (shell glob, e.g. "*.md" or "ch-*.txt").
        voice: Built-in or library voice name, or reference clip (never a presigned URL),
            for every chapter.
        options: Narration options, for every chapter.
        max_in_flight: Chapters narrated at once (each maps one task per chunk).
        lexicon: How to say names and rare words, for every chapter, over the
            `lexicon.toml` beside the chapters, if any.
        cast: For dialogue: the narrator's and each speaker's voice, for every chapter.
        chapter_deployment: Run each chapter as a flow run of this deployment (e.g.
            "narrate-chapter/narrate-chapter"), taken by any worker of its pool on any
            machine; a chapter whose worker dies is run again. Empty: each chapter is a
            subflow in this process.
    """
    if is_book(source):
        from flows.book import narrate_book

        book = narrate_book(
            source, out_dir, None, False, voice, options, max_in_flight, lexicon, cast
        )
        return book.batch
    if not 1 <= max_in_flight <= MAX_IN_FLIGHT:
        raise PermanentError(f"max_in_flight must be 1-{MAX_IN_FLIGHT}, not {max_in_flight}")
    logger = get_run_logger()
    built = services()
    settings = built.settings
    chapters = list_sources(source, pattern, settings.s3_endpoint_url)
    if not chapters:
        raise PermanentError(f"no chapters matching {pattern!r} in {source}")
    identity = built.backend.identity(resolve(voice, built.library)["voice"])
    outputs = {c: join(out_dir, output_stem(c)) for c in chapters}
    clashes = sharing_a_folder(chapters)
    for chapter, others in clashes.items():
        logger.error("%s: %s", chapter, others)
    chapters_ok = [c for c in chapters if c not in clashes]
    skipped = [
        c
        for c in chapters_ok
        if is_current(c, outputs[c], options, identity, voice, settings, lexicon)
    ]
    todo = [c for c in chapters_ok if c not in skipped]
    logger.info(
        "%d chapters: %d to narrate, %d already current", len(chapters), len(todo), len(skipped)
    )
    if chapter_deployment:
        parameters = {
            c: {
                "source": c,
                "out_dir": outputs[c],
                "voice": voice,
                "options": options.model_dump(mode="json"),
                "cast": None if cast is None else cast.model_dump(mode="json"),
                "lexicon": lexicon,
            }
            for c in todo
        }
        states = run_chapters(chapter_deployment, parameters, max_in_flight)
    else:
        states = _in_process(todo, outputs, voice, options, lexicon, cast, max_in_flight)
    result = BatchResult(
        narrated=[c for c, s in states.items() if s.is_completed()],
        skipped=skipped,
        failed={
            **clashes,
            **{c: reason(s) for c, s in states.items() if not s.is_completed()},
        },
    )
    create_markdown_artifact(
        report(result),
        key="batch-summary",
        description=f"Batch of {len(chapters)} chapters from {source}",
    )
    if result.failed:
        raise PermanentError(
            f"{len(result.failed)} of {len(chapters)} chapters failed: "
            + "; ".join(
                why if why.startswith(f"{c}: ") else f"{c}: {why}"
                for c, why in result.failed.items()
            )
        )
    return result


def report(result: BatchResult) -> str:
    rows = [f"| {c} | narrated |" for c in result.narrated]
    rows += [f"| {c} | already current |" for c in result.skipped]
    rows += [f"| {c} | **failed**: {why[:120]} |" for c, why in result.failed.items()]
    return "\n".join(
        [
            f"{len(result.narrated)} narrated, {len(result.skipped)} skipped, "
            f"{len(result.failed)} failed.",
            "",
            "| chapter | result |",
            "|---|---|",
            *rows,
        ]
    )
