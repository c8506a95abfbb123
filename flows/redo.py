"""redo_chunks: new takes of some chunks of a narrated chapter, the rest left as they are.

The chapter is narrated again from what its published metadata.json records (source,
voice, cast, lexicon, options), with a TakePlan that asks for a new take of each chunk to
redo (tasks/takes.py): those are the only engine calls; every other chunk is read from the
chunk cache, so its audio in the new WAV is the same samples as before. The whole-chapter
check hears again only the windows that hold a changed chunk, and everything is published
again at once. `choose` picks an earlier take (a cache read), `keep` pins the chosen take
against `--refresh`, `release` unpins it.
"""

import hashlib
import json
from typing import Any

from flows.chapter import ChapterResult, Review, narrate
from flows.parameters import checked_flow
from flows.services import current_settings
from gpu_worker.errors import InputError
from tasks.cast import Cast
from tasks.options import NarrationOptions
from tasks.outputs import MANIFEST, published_problem, read_if_exists
from tasks.storage import is_s3, join, s3_client
from tasks.takes import Edits
from tasks.validation import read_findings


@checked_flow(name="redo-chunks")
def redo_chunks(
    out_dir: str,
    chunks: list[int] | None = None,
    choose: dict[int, int] | None = None,
    keep: list[int] | None = None,
    release: list[int] | None = None,
) -> ChapterResult:
    """Re-take chosen chunks of a narrated chapter and publish it again.

    Args:
        out_dir: The chapter's output folder or s3:// prefix (where its metadata.json is).
        chunks: Chunk numbers to read again (a new take each, with fresh seeds); every
            other chunk keeps its audio.
        choose: {chunk: take} to go back to an earlier take of a chunk (no engine call).
        keep: Chunks whose chosen take is kept: a later `--refresh` leaves it as it is.
        release: Kept chunks to let go again.
    """
    edits = Edits(
        frozenset(chunks or ()), dict(choose or {}), frozenset(keep or ()), frozenset(release or ())
    )
    if not edits.chunks():
        raise InputError("nothing to do: name chunks to redo, choose, keep or release")
    both = set(edits.keep) & set(edits.release)
    if both:
        raise InputError(f"chunk {min(both)} is both kept and released: choose one")
    both = set(edits.redo) & set(edits.choose)
    if both:
        raise InputError(f"chunk {min(both)} is both redone and given a take: choose one")
    source, voice, options, cast, lexicon, review = published_review(out_dir, edits)
    return narrate(source, out_dir, voice, options, cast, lexicon, review)


def published_review(out_dir: str, edits: Edits) -> tuple[Any, ...]:
    """The narration the published set at `out_dir` records, and the Review of it."""
    endpoint = current_settings()[0].s3_endpoint_url
    problem = published_problem(out_dir, endpoint)
    if problem:
        raise InputError(f"{out_dir}: not a narrated chapter to redo ({problem})")
    client = s3_client(endpoint) if is_s3(out_dir) else None
    # read first: `narrate` checks under the lock that the set is still this one
    manifest = read_if_exists(join(out_dir, MANIFEST), client) or b""
    metadata = json.loads(read_if_exists(join(out_dir, "metadata.json"), client) or b"{}")
    try:
        source = metadata["source"]["path"]
        records = metadata["chunks"]
        options = NarrationOptions.model_validate({**metadata["options"], "refresh_cache": False})
        cast = Cast.model_validate(metadata["cast"]) if metadata.get("cast") else None
        backend, narrated_from = metadata["backend"]["name"], metadata["source"]["sha256"]
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"{out_dir}/metadata.json: not narrator's metadata ({e})") from e
    voice, cast_recorded = metadata.get("voice"), json.dumps(metadata.get("cast"))
    if "…" in (voice or "") or "…" in cast_recorded:
        raise InputError(
            f"{out_dir}/metadata.json records its voice without the clip URL's query string "
            "(cut, as a possible credential), so a redo cannot read with the same voice; "
            "narrate the chapter again with `narrator run`"
        )
    validation = read_if_exists(join(out_dir, "validation.json"), client)
    review = Review(
        edits=edits,
        backend=backend,
        source_sha256=narrated_from,
        first_takes={
            r["cache_key"]: {
                "score": r["best_score"],
                "passed": r["passed"],
                "transcript": r["transcript"],
                "seconds": r["generated_seconds"],
            }
            for r in records
        },
        published=[(r["cache_key"], r.get("wav_sha256")) for r in records],
        findings=read_findings(validation) if validation else None,
        manifest_sha256=hashlib.sha256(manifest).hexdigest(),
    )
    return source, voice, options, cast, metadata.get("lexicon"), review
