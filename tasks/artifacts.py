"""Phase 3: the run in the Prefect UI: a table of every chunk and a summary artifact."""

import hashlib
import re
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from tasks.validation import ChapterValidation
from tasks.verify import AudioCheck


def artifact_key(stem: str, kind: str) -> str:
    """Prefect artifact keys: lowercase ASCII letters, digits and dashes. A name that does
    not fit keeps what does and a short hash of the whole, so "Глава-1" and "Часть-1", or
    "ch_1" and "ch-1", keep artifacts of their own."""
    slug = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-") or "chapter"
    if slug != stem.lower():  # something was replaced: "ch_1" and "ch-1" stay apart
        slug = f"{slug}-{hashlib.sha256(stem.encode()).hexdigest()[:8]}".strip("-")
    return f"{slug}-{kind}"


def worker_seconds(records: list[dict[str, Any]]) -> float:
    """Seconds the workers spent on this run's generated chunks (synthesis and hearing)."""
    return sum(
        (c["synthesis_ms"] + c["validation_ms"]) / 1000
        for r in records
        if not r["cache_hit"]
        for c in r["candidates"]
    )


def summary(
    stem: str,
    location: str,
    records: list[dict[str, Any]],
    check: AudioCheck,
    validation: ChapterValidation | None,
    backend: str,
    price_per_hour: float,
) -> str:
    seconds = worker_seconds(records)
    low = [r["index"] for r in records if not r["passed"]]
    lines = [
        f"### {stem}",
        f"- **Audio**: {check.duration_seconds / 60:.1f} min, {check.integrated_lufs:.1f} LUFS, "
        f"true peak {check.true_peak_dbtp:.1f} dBTP ({'meets' if check.loudness_ok else 'misses'}"
        " the target)",
        f"- **Chunks**: {len(records)}, {sum(r['cache_hit'] for r in records)} from cache, "
        f"{sum(r['retries'] for r in records if not r['cache_hit'])} extra rounds on the "
        f"worker, {sum(max(0, r['attempts'] - 1) for r in records)} task retries",
        f"- **Below threshold**: {low or 'none'}",
        "- **Whole-chapter check**: "
        + (
            "skipped"
            if validation is None
            else f"WER {100 * validation.wer:.1f} %, flagged {validation.flagged or 'none'}"
        ),
        f"- **Output**: `{location}`",
        f"- **Review**: `narrator review {location}` (hear each chunk, redo or keep takes; "
        "or run the redo-chunks deployment)",
        f"- **Worker time**: {seconds:.0f} s on the {backend} backend"
        + (
            f", about ${seconds / 3600 * price_per_hour:.2f} at ${price_per_hour:.2f}/GPU-hour"
            if backend == "runpod"
            else ""
        ),
    ]
    if backend == "elevenlabs":
        asked = [r for r in records if not r["cache_hit"]]
        lines.append(
            f"- **Characters billed**: {sum(r['characters_sent'] for r in asked):,} for "
            f"{len(asked)} chunks asked ({len(records) - len(asked)} from cache cost nothing)"
        )
    return "\n".join(lines)


@task(name="publish-artifacts", cache_policy=NONE)
def publish_artifacts(stem: str, records: list[dict[str, Any]], summary_markdown: str) -> None:
    """The chunk table and the run summary, as Prefect artifacts (the UI's Artifacts tab)."""
    create_table_artifact(
        [
            {
                "chunk": r["index"],
                "text": r["display"][:60],
                "best score": r["best_score"],
                "scores": ", ".join(f"{s:g}" for s in r["scores"]),
                "extra rounds": r["retries"],
                "task retries": max(0, r["attempts"] - 1),
                "cache hit": r["cache_hit"],
                "seconds": round(r["end"] - r["start"], 2),
            }
            for r in records
        ],
        key=artifact_key(stem, "chunks"),
        description=f"Every chunk of {stem}",
    )
    create_markdown_artifact(
        summary_markdown,
        key=artifact_key(stem, "summary"),
        description=f"Narration of {stem}",
    )
