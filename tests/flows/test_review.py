"""Review: redo chosen chunks, go back to an earlier take, keep a take through --refresh.

The embedded engine and Whisper tiny.en throughout; engine calls are counted on the local
backend the flows use."""

import io
import itertools
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import httpx
import numpy as np
import pytest
import soundfile as sf

from flows.chapter import NarrationOptions, narrate, narrate_chapter
from flows.redo import published_review, redo_chunks
from flows.review.app import review_app
from flows.services import configured, current_settings
from gpu_worker.errors import InputError
from gpu_worker.schema import GenerationParams
from tasks import validation
from tasks.audio import Placement
from tasks.cache import chunk_store, read_chunk
from tasks.loudness import integrated_loudness
from tasks.settings import NarratorSettings
from tasks.takes import Edits
from tests.conftest import local_backend

pytestmark = pytest.mark.usefixtures("prefect_server")

RATE = 24000
ONE_TAKE = GenerationParams(n_candidates=1, max_retries=0)
# one sentence a chunk; no MP3 or M4B (their encoders are tested elsewhere)
OPTIONS = NarrationOptions(
    generation=ONE_TAKE, formats=[], chunking={"target_chars": 40, "max_chars": 90}
)
WHO = ["The keeper", "A fisherman", "The old dog", "Her brother", "The ferryman", "A stranger"]
DID = [
    "walked slowly along the harbour wall",
    "counted the boats before the storm",
    "waited by the lamp until morning",
    "carried the nets up from the beach",
    "listened to the wind over the rocks",
    "painted the door of the boathouse",
    "climbed the stairs to the lantern room",
    "watched the gulls above the water",
    "mended the sail with a heavy needle",
    "wrote a letter to the mainland",
]
SIXTY = " ".join(f"{who} {did}." for who, did in itertools.product(WHO, DID))
SIX = (
    "The ferry left the pier at dawn. Nobody on the shore waved goodbye to it. "
    "The captain checked the compass twice. A cold wind came in from the north. "
    "By noon the island was a grey line. Everyone on board was glad to be home."
)


def calls() -> int:
    return int(local_backend().requests)


def narrated(folder: Path, text: str, options: NarrationOptions = OPTIONS) -> dict[str, Any]:
    source = folder / "harbour.md"
    source.write_text(text)
    narrate_chapter(str(source), str(folder / "out"), None, options)
    return read(folder)


def read(folder: Path) -> dict[str, Any]:
    out = folder / "out"
    samples, rate = sf.read(out / "harbour.wav", dtype="int16")
    assert rate == RATE
    return {
        "metadata": json.loads((out / "metadata.json").read_text()),
        "validation": json.loads(v.read_text())
        if (v := out / "validation.json").exists()
        else None,
        "takes": json.loads(t.read_text()) if (t := out / "takes.json").exists() else None,
        "samples": samples,
    }


def span(state: dict[str, Any], index: int) -> np.ndarray:
    chunk = state["metadata"]["chunks"][index]
    return state["samples"][round(chunk["start"] * RATE) : round(chunk["end"] * RATE)]


def same_samples(before: dict[str, Any], after: dict[str, Any], index: int) -> bool:
    """Whether chunk `index` is heard in `after` with exactly the samples it had in `before`
    (placements are rounded to the millisecond: the exact start is searched within it)."""
    old = span(before, index)
    start = round(after["metadata"]["chunks"][index]["start"] * RATE)
    new = after["samples"]
    return any(
        np.array_equal(old, new[start + shift : start + shift + old.size])
        for shift in range(-RATE // 1000, RATE // 1000 + 1)
        if start + shift >= 0
    )


@pytest.fixture(scope="module")
def chapter(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A 60-chunk chapter, narrated once for the module, in a cache of its own."""
    folder = tmp_path_factory.mktemp("sixty")
    with configured(NarratorSettings(cache_dir=str(folder / "cache"))):
        state = narrated(folder, SIXTY)
    assert len(state["metadata"]["chunks"]) == 60
    return folder, state  # not yielded inside: those settings would reach later tests


def test_a_redo_of_two_chunks_makes_two_engine_calls_and_leaves_every_other_chunk_as_it_was(
    chapter: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, before = chapter
    heard: list[float] = []  # seconds of audio the chapter check transcribed
    with configured(NarratorSettings(cache_dir=str(folder / "cache"))):
        check = validation._validator(current_settings()[1])  # the one the flow uses
        real = check.transcribe

        def transcribe(audio: np.ndarray, rate: int) -> Any:
            heard.append(audio.size / rate)
            return real(audio, rate)

        monkeypatch.setattr(check, "transcribe", transcribe)
        made = calls()
        result = redo_chunks(str(folder / "out"), [10, 14])
        assert calls() == made + 2
        after = read(folder)

        chunks = after["metadata"]["chunks"]
        assert [c["take"] for c in chunks if c["take"]] == [1, 1]
        assert chunks[10]["take"] == 1 and chunks[14]["take"] == 1
        for index in (10, 14):
            assert chunks[index]["cache_key"] != before["metadata"]["chunks"][index]["cache_key"]
            assert not chunks[index]["cache_hit"]
        others = [i for i in range(60) if i not in (10, 14)]
        assert all(chunks[i]["cache_hit"] for i in others)
        assert [i for i in others if not same_samples(before, after, i)] == []

        # the chapter's figures are reported again, for the new audio
        assert result.wer == after["metadata"]["validation"]["wer"] is not None
        assert result.integrated_lufs == pytest.approx(
            integrated_loudness(after["samples"].astype(np.float32) / 32768, RATE), abs=0.05
        )
        # only the check's windows holding a changed chunk were heard again
        windows = validation.windows([Placement(c["start"], c["end"]) for c in chunks])
        assert len(windows) >= 2
        assert 0 < sum(heard) < after["metadata"]["audio"]["duration_seconds"] - 30
        findings = {f["index"]: f for f in after["validation"]["chunks"]}
        old = {f["index"]: f for f in before["validation"]["chunks"]}
        unheard = [
            i
            for w in windows
            if not any(w.first <= changed <= w.last for changed in (10, 14))
            for i in range(w.first, w.last + 1)
        ]
        assert unheard and all(findings[i]["heard"] == old[i]["heard"] for i in unheard)

        takes = {e["index"]: e for e in after["takes"]["chunks"]}
        assert sorted(takes) == [10, 14]
        assert [t["number"] for t in takes[10]["takes"]] == [0, 1] and takes[10]["chosen"] == 1
        first = takes[10]["takes"][0]
        assert first["cache_key"] == before["metadata"]["chunks"][10]["cache_key"]
        assert first["transcript"] == before["metadata"]["chunks"][10]["transcript"]
        assert takes[10]["takes"][1]["seed"] != first["seed"]

        # the first take again: a cache read, and the chapter as it was
        made = calls()
        redo_chunks(str(folder / "out"), choose={10: 0, 14: 0})
        assert calls() == made
        again = read(folder)
        assert np.array_equal(again["samples"], before["samples"])
        assert [c["take"] for c in again["metadata"]["chunks"]] == [0] * 60


def test_a_kept_take_survives_refresh_moves_with_its_chunk_and_is_dropped_when_edited(
    tmp_path: Path, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = narrated(tmp_path, SIX)
    assert len(before["metadata"]["chunks"]) == 6 and before["takes"] is None
    redo_chunks(str(tmp_path / "out"), [2], keep=[2])
    kept = read(tmp_path)
    key = kept["metadata"]["chunks"][2]["cache_key"]
    entry = read_chunk(chunk_store(cache), key)
    assert entry is not None and kept["takes"]["chunks"][0]["kept"]

    made = calls()
    refreshed = narrated(tmp_path, SIX, OPTIONS.model_copy(update={"refresh_cache": True}))
    assert calls() == made + 5  # every chunk but the kept one
    chunk = refreshed["metadata"]["chunks"][2]
    assert (chunk["cache_key"], chunk["take"], chunk["cache_hit"]) == (key, 1, True)
    assert same_samples(kept, refreshed, 2)
    again = read_chunk(chunk_store(cache), key)
    assert again is not None and again.wav == entry.wav

    # a sentence inserted before it: the kept take follows its chunk
    made = calls()
    moved = narrated(tmp_path, "The bell rang once across the bay. " + SIX)
    assert calls() == made + 1
    chunk = moved["metadata"]["chunks"][3]
    assert (chunk["cache_key"], chunk["take"]) == (key, 1)
    assert moved["takes"]["chunks"][0]["index"] == 3

    # its own text edited: the take is dropped, with a note
    edited = SIX.replace("The captain checked the compass twice.", "The captain checked it.")
    caplog.clear()
    narrated(tmp_path, edited)
    after = read(tmp_path)
    assert after["metadata"]["chunks"][2]["take"] == 0
    assert after["takes"]["chunks"] == []
    (note,) = after["takes"]["dropped"]
    assert note.startswith("the chunk that was chunk 3 ('The captain checked the compass twice.')")
    assert "kept take 1" in note
    assert any(note in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


def test_chunks_of_the_same_text_keep_takes_of_their_own(tmp_path: Path, cache: Path) -> None:
    bell = "The bell in the tower rang out over the bay."
    text = f"{bell} The keeper waited by the door for an hour. {bell} Nobody came up the stairs."
    options = OPTIONS.model_copy(update={"validate_chapter": False})
    first = narrated(tmp_path, text, options)
    chunks = first["metadata"]["chunks"]
    assert chunks[0]["cache_key"] == chunks[2]["cache_key"]  # the same request

    # the second one kept as it is: a --refresh reads their shared entry, rewriting neither
    redo_chunks(str(tmp_path / "out"), keep=[2])
    made = calls()
    refreshed = narrated(tmp_path, text, options.model_copy(update={"refresh_cache": True}))
    assert calls() == made + 2
    assert same_samples(first, refreshed, 2) and same_samples(first, refreshed, 0)

    # a new take of each: numbered apart, so neither comes back as the other's
    made = calls()
    redo_chunks(str(tmp_path / "out"), [2])
    redo_chunks(str(tmp_path / "out"), [0])
    assert calls() == made + 2
    after = read(tmp_path)
    chunks = after["metadata"]["chunks"]
    assert (chunks[0]["take"], chunks[2]["take"]) == (2, 1)
    assert chunks[0]["cache_key"] != chunks[2]["cache_key"]
    again = narrated(tmp_path, text, options)  # a plain rerun: each keeps its own
    assert [c["take"] for c in again["metadata"]["chunks"]] == [2, 0, 1, 0]
    assert np.array_equal(again["samples"], after["samples"])


def test_a_redo_refuses_what_it_cannot_do_without_touching_the_chapter(
    tmp_path: Path, cache: Path
) -> None:
    narrated(tmp_path, SIX)
    out = str(tmp_path / "out")
    published = (tmp_path / "out" / "harbour.wav").read_bytes()
    made = calls()
    refusals: list[tuple[Callable[[], Any], str]] = [
        (lambda: redo_chunks(out, [6]), "no chunk 6: the chapter has chunks 0 to 5"),
        (lambda: redo_chunks(out, choose={1: 3}), "chunk 1 has no take 3"),
        (lambda: redo_chunks(out), "nothing to do"),
        (lambda: redo_chunks(out, keep=[1], release=[1]), "both kept and released"),
        (lambda: redo_chunks(out, [2], choose={2: 0}), "both redone and given a take"),
        (lambda: redo_chunks(str(tmp_path / "nowhere"), [1]), "not a narrated chapter"),
    ]
    for redo, message in refusals:
        with pytest.raises(InputError, match=message):
            redo()
    (tmp_path / "harbour.md").write_text(SIX.replace("dawn", "dusk"))
    with pytest.raises(InputError, match="has changed since this chapter was narrated"):
        redo_chunks(out, [1])
    (tmp_path / "harbour.md").write_text(SIX)
    # the chapter published again between reading it and taking its lock
    source, voice, options, cast, lexicon, review = published_review(out, Edits(frozenset({1})))
    narrate_chapter(str(tmp_path / "harbour.md"), out, None, OPTIONS)
    published = (tmp_path / "out" / "harbour.wav").read_bytes()
    with pytest.raises(InputError, match="published again while this redo started"):
        narrate(source, out, voice, options, cast, lexicon, review)
    shutil.rmtree(cache)
    with pytest.raises(InputError, match=r"chunks \[0, 2, 3, 4, 5\] are not in the chunk cache"):
        redo_chunks(out, [1])
    assert calls() == made
    assert (tmp_path / "out" / "harbour.wav").read_bytes() == published
    assert not (tmp_path / "out" / "takes.json").exists()


def test_review_and_redo_on_s3_outputs_and_an_s3_cache(
    s3: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, serve: Callable[[Any], str]
) -> None:
    client = boto3.client("s3", endpoint_url=s3)
    # buckets of its own: moto keeps every bucket for the whole test process
    for bucket in ("review-books", "review-cache"):
        client.create_bucket(Bucket=bucket)
    client.put_object(Bucket="review-books", Key="chapters/ferry.md", Body=SIX.encode())
    monkeypatch.setenv("NARRATOR_S3_ENDPOINT_URL", s3)
    monkeypatch.setenv("NARRATOR_CACHE_DIR", "s3://review-cache/narrator")
    out = "s3://review-books/audio/ferry"
    narrate_chapter("s3://review-books/chapters/ferry.md", out, None, OPTIONS)
    made = calls()
    redo_chunks(out, [4])
    assert calls() == made + 1

    from tasks.storage import result_storage

    settings = current_settings()[0]
    page = serve(review_app(out, s3, result_storage(settings.cache_dir, s3)))
    view = httpx.get(f"{page}/api/chapter", timeout=30).json()
    assert view["audio_url"].startswith(f"{s3}/review-books/audio/ferry/ferry.wav?")  # presigned
    audio = httpx.get(view["audio_url"], timeout=30)
    samples, rate = sf.read(io.BytesIO(audio.content))
    assert samples.size / rate == pytest.approx(view["duration"], abs=0.01)
    (chunk,) = [c for c in view["chunks"] if c["takes"]]
    assert chunk["index"] == 4 and [t["number"] for t in chunk["takes"]] == [0, 1]
    for take in chunk["takes"]:
        heard = httpx.get(f"{page}{take['url']}", timeout=30)
        assert heard.status_code == 200
        take_samples, take_rate = sf.read(io.BytesIO(heard.content))
        assert take_samples.size / take_rate == pytest.approx(take["seconds"], abs=0.002)
    peaks = httpx.get(f"{page}/api/peaks", timeout=30).json()
    assert len(peaks) == len(view["chunks"]) and all(max(p) > 0.05 for p in peaks)
    missing = httpx.get(f"{page}/takes/{'0' * 64}.wav", timeout=30)
    assert missing.status_code == 404
    # a page of another site, through a name that resolves here (DNS rebinding)
    rebound = httpx.post(f"{page}/api/apply", json={"redo": [1]}, headers={"Host": "evil.test"})
    assert rebound.status_code == 400 and calls() == made + 1
