"""Takes: the readings a chunk has had, which one the chapter uses, and which are kept.

A chunk's first reading is take 0. `narrator redo` (or the review page) asks for another:
take t is the same request with candidate seeds no earlier take used (`take_seed`), so it
has its own cache key and every earlier take stays cached, to be chosen again without an
engine call. What a chapter uses is published with it in takes.json:

    {"format": 1, "chunks": [{"index": 12, "base_key": "...", "chosen": 2, "kept": true,
                              "takes": [{"number": 0, ...}, {"number": 1, ...}, ...]}],
     "dropped": ["chunk 12: ..."]}

Every run of the chapter reads it back (`TakePlan`), so a chosen take stays chosen. A
*kept* take is also exempt from `--refresh`: its audio is read from the cache, never made
again. An entry belongs to its chunk's take-0 cache key (`base_key`: the text, voice and
settings it was read with), not to an index: text inserted before it moves it with its
chunk, and once its own text is edited the entry is dropped, with a note in the log and in
takes.json. Chunks of the same text and voice share a base key; each has its own entry, and
their takes are numbered apart, so a redo of one never comes back as the other's take.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from prefect.logging import get_logger
from pydantic import BaseModel, Field, ValidationError

from gpu_worker.errors import InputError
from gpu_worker.schema import GenerateRequest, GenerationParams
from tasks.cache import ChunkAudio, ChunkJob

TAKES = "takes.json"
FORMAT = 1


def take_seed(params: GenerationParams, number: int) -> int:
    """The first candidate seed of take `number`. A take uses up to n_candidates x
    (max_retries + 1) seeds from there, so no two takes of a chunk share a candidate."""
    return (params.seed + number * params.n_candidates * (params.max_retries + 1)) % 2**31


def retake(request: GenerateRequest, number: int) -> GenerateRequest:
    """The request for take `number` of a chunk whose take-0 request is `request`."""
    if number == 0:
        return request
    return request.model_copy(update={"seed": take_seed(request, number)})


class Take(BaseModel):
    """One reading of a chunk: its cache entry and how it was heard."""

    number: int = Field(ge=0)
    seed: int
    cache_key: str = Field(pattern="^([0-9a-f]{64})?$")  # empty until it is made
    score: float | None = None
    passed: bool | None = None
    transcript: str = ""
    seconds: float | None = None
    wav_sha256: str | None = None  # of its audio, as it was when it was heard


class ChunkTakes(BaseModel):
    """A chunk's takes, the one its chapter uses, and whether that one is kept."""

    index: int = Field(ge=0)
    base_key: str = Field(description="Take 0's cache key: the chunk's text, voice, settings.")
    text: str = ""
    chosen: int = 0
    kept: bool = False
    takes: list[Take]

    def take(self, number: int) -> Take | None:
        return next((t for t in self.takes if t.number == number), None)


class TakesFile(BaseModel):
    format: int = FORMAT
    chunks: list[ChunkTakes] = Field(default_factory=list)
    dropped: list[str] = Field(default_factory=list)


def parse_takes(raw: bytes | None, where: str) -> TakesFile:
    """A published takes.json (none: no chunk has more than its first take). One that
    cannot be read is refused: going on would silently lose the takes it keeps."""
    if raw is None:
        return TakesFile()
    try:
        return TakesFile.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as e:
        raise InputError(
            f"{where}: not a takes file ({str(e).splitlines()[0]}); restore it, or delete it "
            "to forget every chosen and kept take"
        ) from e


@dataclass(frozen=True)
class Edits:
    """What a review asks of a chapter already narrated (chunk indices)."""

    redo: frozenset[int] = frozenset()  # a new take each, which the chapter then uses
    choose: Mapping[int, int] = field(default_factory=dict)  # chunk -> an earlier take
    keep: frozenset[int] = frozenset()  # the chosen take survives --refresh
    release: frozenset[int] = frozenset()  # no longer kept

    def chunks(self) -> set[int]:
        return set(self.redo) | set(self.choose) | set(self.keep) | set(self.release)


class TakePlan:
    """The takes a run uses, from the published takes.json and this run's edits.

    `match` pairs published entries with this run's chunks (their take-0 jobs); then
    `plan_jobs` asks `take_for(job)` which take each chunk is read with; the run records
    what each take turned out to be (`record`) and writes `file()`."""

    def __init__(self, published: TakesFile, edits: Edits | None = None) -> None:
        self.published = published.chunks
        self.edits = edits or Edits()
        self.entries: dict[int, ChunkTakes] = {}  # by this run's chunk index
        self.dropped: list[str] = []
        self._numbers: dict[str, set[int]] = {}  # take numbers made of each base key

    def match(self, jobs: list[ChunkJob]) -> None:
        """Pair each published entry with the chunk it belongs to: first the chunk at its
        index with its base key; then, for text inserted or removed before it, the nearest
        chunk with its base key that no entry has (chunks of identical text and voice share
        a base key: each keeps its own entry). An entry left over is dropped, with a note."""
        for entry in self.published:
            self._numbers.setdefault(entry.base_key, set()).update(t.number for t in entry.takes)
        keys = {job.index: job.cache_key for job in jobs}
        left = []
        for entry in self.published:
            if keys.get(entry.index) == entry.base_key and entry.index not in self.entries:
                self.entries[entry.index] = entry.model_copy(deep=True)
            else:
                left.append(entry)
        for entry in left:
            free = [i for i, key in keys.items() if key == entry.base_key and i not in self.entries]
            if not free:
                self._drop(entry)
                continue
            index = min(free, key=lambda i: abs(i - entry.index))
            self.entries[index] = entry.model_copy(update={"index": index}, deep=True)

    def take_for(self, job: ChunkJob) -> int:
        """The take chunk `job.index` is read with this run (0: its first)."""
        index = job.index
        entry = self.entries.get(index)
        if index in self.edits.redo:
            entry = entry or self._first_take(job)
            used = self._numbers.setdefault(job.cache_key, set())
            entry.chosen = max(used | {t.number for t in entry.takes}) + 1
            used.add(entry.chosen)  # a chunk of the same text gets a take of its own
            entry.takes.append(
                Take(number=entry.chosen, seed=take_seed(job.request, entry.chosen), cache_key="")
            )
            entry.kept = entry.kept and index in self.edits.keep
        if index in self.edits.choose:
            number = self.edits.choose[index]
            entry = entry or self._first_take(job)
            if entry.take(number) is None:
                made = sorted(t.number for t in entry.takes)
                raise InputError(f"chunk {index} has no take {number} (it has takes {made})")
            entry.chosen = number
        if index in self.edits.keep or index in self.edits.release:
            entry = entry or self._first_take(job)
            entry.kept = index in self.edits.keep
        if entry is None:
            return 0
        self.entries[index] = entry
        return entry.chosen

    def kept(self) -> set[int]:
        """Chunks whose chosen take is kept: read from the cache even with --refresh."""
        return {i for i, e in self.entries.items() if e.kept}

    def fill(self, first_takes: Mapping[str, dict[str, object]]) -> None:
        """Takes this run did not read (a take 0 made by an earlier run, before the chunk
        had an entry) described from that run's metadata.json records, by cache key."""
        for entry in self.entries.values():
            entry.takes = [
                t.model_copy(update=first_takes[t.cache_key])
                if t.score is None and t.cache_key in first_takes
                else t
                for t in entry.takes
            ]

    def record(self, job: ChunkJob, audio: ChunkAudio | None) -> None:
        """What the take chunk `job.index` used turned out to be (audio None: failed). A
        kept take whose audio is no longer the audio that was kept (another chapter's
        --refresh rewrote that cache entry) is named in the log."""
        entry = self.entries.get(job.index)
        if entry is None or audio is None:
            return
        chosen = entry.take(entry.chosen)
        if entry.kept and chosen and chosen.wav_sha256 not in (None, audio.wav_sha256):
            get_logger("narrator").warning(
                "chunk %d: the cache entry of its kept take %d holds other audio than was "
                "kept (a --refresh elsewhere replaced it); listen to it again",
                job.index,
                entry.chosen,
            )
        entry.takes = [
            t.model_copy(update=heard(audio, job.cache_key)) if t.number == entry.chosen else t
            for t in entry.takes
        ]

    def file(self) -> TakesFile | None:
        """takes.json for this run; None when no chunk has more than its first take, none
        is kept and nothing was published before."""
        entries = [e for e in self.entries.values() if len(e.takes) > 1 or e.kept or e.chosen]
        if not entries and not self.published and not self.dropped:
            return None
        return TakesFile(chunks=sorted(entries, key=lambda e: e.index), dropped=self.dropped)

    def _drop(self, entry: ChunkTakes) -> None:
        what = f"kept take {entry.chosen}" if entry.kept else f"take {entry.chosen}"
        note = (
            f"the chunk that was chunk {entry.index} ({entry.text[:60]!r}) changed its text, "
            f"voice or settings since its {what} was chosen: that take is dropped and the "
            "chunk is read anew"
        )
        self.dropped.append(note)
        (get_logger("narrator").warning if entry.kept else get_logger("narrator").info)(note)

    def _first_take(self, job: ChunkJob) -> ChunkTakes:
        return ChunkTakes(
            index=job.index,
            base_key=job.cache_key,
            text=job.request.text,
            takes=[Take(number=0, seed=job.request.seed, cache_key=job.cache_key)],
        )


def heard(audio: ChunkAudio, cache_key: str) -> dict[str, object]:
    """A take's record fields from its chunk audio."""
    return {
        "cache_key": cache_key,
        "score": audio.best_score,
        "passed": audio.passed,
        "transcript": audio.transcript,
        "seconds": audio.duration_seconds,
        "wav_sha256": audio.wav_sha256,
    }


def check_indices(edits: Edits, count: int) -> None:
    """Every chunk an edit names exists in a chapter of `count` chunks."""
    wrong = sorted(i for i in edits.chunks() if not 0 <= i < count)
    if wrong:
        raise InputError(f"no chunk {wrong[0]}: the chapter has chunks 0 to {count - 1}")
