"""The whole flow on the embedded engine: real audio, real Whisper, a real Prefect API."""

import itertools
import json
from pathlib import Path

import av
import pytest
import soundfile as sf
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.task_runners import ThreadPoolTaskRunner

from flows.chapter import ChapterResult, NarrationOptions, narrate_chapter
from flows.map_chunks import map_chunks
from flows.services import services
from gpu_worker.best_of_n import BestOfN
from gpu_worker.errors import InputError, PermanentError, ValidationFailed
from gpu_worker.qc import longest_inner_silence
from gpu_worker.schema import GenerateRequest, GenerateResult, GenerationParams
from gpu_worker.scoring import compare
from tasks.audio import AudioOptions
from tasks.backends import LocalBackend
from tasks.cache import ChunkJob
from tasks.chunk_generation import plan_jobs
from tasks.encode import decoded_seconds
from tasks.loudness import integrated_loudness, true_peak_db
from tasks.outputs import published_problem
from tasks.settings import NarratorSettings
from tasks.storage import result_storage
from tests.conftest import local_backend

pytestmark = pytest.mark.usefixtures("prefect_server")

CHAPTER = """# The Night Crossing

At 11:20 p.m. the power failed across the whole headland. The beacon shone for 47 minutes.

Dr. Okafor had paid $6,250 for it. "It does not need a boat," he said.

It took them 25 minutes to cross. At 12:31 a.m. the old generator coughed and roared.

The beam swept out across the water, once every 10 seconds, as it had since 1951.
"""
FAST = NarrationOptions(generation=GenerationParams(n_candidates=1))


def backend() -> LocalBackend:
    return local_backend()  # type: ignore[no-any-return]


def narrate(tmp_path: Path, text: str, options: NarrationOptions = FAST) -> ChapterResult:
    source = tmp_path / "night-crossing.md"
    source.write_text(text)
    return narrate_chapter(str(source), str(tmp_path / "out"), None, options)


def metadata(result: ChapterResult) -> dict:
    return json.loads(Path(result.metadata).read_text())


def test_a_chapter_is_narrated_with_every_output(tmp_path: Path, cache: Path) -> None:
    result = narrate(tmp_path, CHAPTER)
    assert result.audio == str(tmp_path / "out" / "night-crossing.wav")
    info = sf.info(Path(result.audio))
    assert (info.samplerate, info.channels, info.subtype) == (24000, 1, "PCM_16")
    assert info.duration == pytest.approx(result.duration_seconds, abs=0.01)
    meta = metadata(result)
    chunks = meta["chunks"]
    assert meta["totals"]["chunks"] == len(chunks) == result.chunks >= 5
    assert meta["source"]["words"] / (info.duration / 60) == pytest.approx(160, rel=0.35)
    assert chunks[0]["text"] == "The Night Crossing." and chunks[0]["heading"]
    assert [c["break_after"] for c in chunks][-1] == "end"
    assert all(c["start"] < c["end"] <= d["start"] for c, d in itertools.pairwise(chunks))
    assert all(c["best_score"] >= 80 and len(c["scores"]) == 1 for c in chunks)
    assert "seven" in json.dumps(chunks) or "forty-seven" in chunks[1]["text"]
    segments = json.loads(Path(result.segments).read_text())
    assert [s["text"] for s in segments][2].startswith("Dr. Okafor had paid $6,250")
    srt = Path(result.subtitles).read_text()
    assert srt.startswith("1\n00:00:00,500 --> ") and "$6,250" in srt
    assert not list((tmp_path / "out").glob(".narrator-staging-*"))


def test_the_narration_says_the_text(tmp_path: Path, cache: Path, worker: BestOfN) -> None:
    """Transcribe the finished chapter and compare it with the source: WER <= 8 %."""
    result = narrate(tmp_path, CHAPTER, NarrationOptions())
    audio, rate = sf.read(Path(result.audio), dtype="float32")
    heard = worker.validator.transcribe(audio, rate).text
    reference = " ".join(c["display"] for c in metadata(result)["chunks"])
    alignment = compare(reference, heard)
    assert alignment.reference_words > 60
    assert alignment.wer <= 0.08, (reference, heard)


def test_a_rerun_makes_no_engine_calls_and_the_same_audio(tmp_path: Path, cache: Path) -> None:
    first = narrate(tmp_path, CHAPTER)
    audio = Path(first.audio).read_bytes()
    calls = backend().requests
    second = narrate(tmp_path, CHAPTER)
    assert backend().requests == calls  # zero engine calls
    assert second.cache_hits == second.chunks
    assert all(c["cache_hit"] and c["attempts"] == 0 for c in metadata(second)["chunks"])
    assert Path(second.audio).read_bytes() == audio


def test_editing_one_sentence_regenerates_only_its_chunk(tmp_path: Path, cache: Path) -> None:
    narrate(tmp_path, CHAPTER)
    calls = backend().requests
    edited = CHAPTER.replace("It took them 25 minutes to cross.", "It took them 40 minutes.")
    result = narrate(tmp_path, edited)
    assert backend().requests == calls + 1
    regenerated = [c for c in metadata(result)["chunks"] if not c["cache_hit"]]
    assert len(regenerated) == 1
    assert regenerated[0]["text"].startswith("It took them forty minutes.")


def test_an_unknown_voice_fails_before_any_work(tmp_path: Path, cache: Path) -> None:
    source = tmp_path / "ch.md"
    source.write_text(CHAPTER)
    calls = backend().requests
    with pytest.raises(InputError, match=r"voice 'nobody' .* available offline: heart"):
        narrate_chapter(str(source), str(tmp_path / "out"), "nobody", FAST)
    assert backend().requests == calls
    assert not (tmp_path / "out").exists()


class Endpoint:
    """A stand-in for a remote endpoint (the hosted RunPod API is out of reach here) whose
    jobs fail permanently for some texts and are served by the real worker otherwise."""

    name = "endpoint"
    billed_per_take = False  # the Backend protocol's, as RunPod's
    uses_neighbours = False

    def __init__(self, worker: BestOfN, refuse: set[str]) -> None:
        self.worker, self.refuse = worker, refuse

    def identity(self, voice: str | None) -> str:
        return self.worker.identity(voice)

    def prepare(self, jobs: int) -> None:
        pass

    def generate(self, request: GenerateRequest) -> GenerateResult:
        if request.text in self.refuse:
            raise PermanentError("job FAILED on the worker: CUDA error: an illegal memory access")
        return self.worker.run(request)


@flow(task_runner=ThreadPoolTaskRunner(max_workers=4))  # type: ignore[arg-type]
def generate_flow(jobs: list[ChunkJob], endpoint: Endpoint, settings: NarratorSettings) -> None:
    storage = result_storage(settings.cache_dir, settings.s3_endpoint_url)
    map_chunks(jobs, endpoint, storage, settings, FAST, "numbered")


def test_failed_chunks_are_all_named_after_the_others_finish(
    tmp_path: Path, cache: Path, worker: BestOfN
) -> None:
    texts = [f"This is sentence number {n}." for n in ("one", "two", "three", "four", "five")]
    endpoint = Endpoint(worker, refuse={texts[1], texts[3]})
    template = GenerateRequest(text=".", n_candidates=1)
    jobs = plan_jobs([template.model_copy(update={"text": t}) for t in texts], endpoint)
    with pytest.raises(PermanentError) as failure:
        generate_flow(jobs, endpoint, services().settings)
    assert str(failure.value).startswith(
        "2 of 5 chunks failed (chunk 1: PermanentError: job FAILED on the worker: CUDA error"
    )
    assert "; chunk 3: PermanentError" in str(failure.value)
    # the three that succeeded are cached: a rerun only needs the failed two
    endpoint.refuse = set()
    calls = []
    endpoint.generate = lambda r: calls.append(r.text) or worker.run(r)  # type: ignore[method-assign]
    generate_flow(jobs, endpoint, services().settings)
    assert sorted(calls) == sorted([texts[1], texts[3]])


def published(folder: Path) -> dict[str, bytes]:
    """The files a reader sees (the hidden lock file is the writers')."""
    return {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".")}


def test_a_failed_run_keeps_the_previous_outputs(tmp_path: Path, cache: Path) -> None:
    good = narrate(tmp_path, CHAPTER)
    before = published(tmp_path / "out")
    # Pauses of 5-20 s make the chapter implausibly slow: phase 3's check fails the run.
    pauses = AudioOptions(sentence_pause=5, paragraph_pause=10, lead_in=10, tail=10)
    slow = FAST.model_copy(update={"audio": pauses})
    with pytest.raises(PermanentError, match="implausible duration"):
        narrate(tmp_path, CHAPTER, slow)
    assert published(tmp_path / "out") == before
    assert published_problem(str(tmp_path / "out")) is None
    assert metadata(good)["totals"]["chunks"] == good.chunks


def test_the_chapter_meets_the_delivery_specs(tmp_path: Path, cache: Path, worker: BestOfN) -> None:
    """Loudness and peaks, pause lengths, word-timed subtitles, MP3 and M4B."""
    result = narrate(tmp_path, CHAPTER)
    audio, rate = sf.read(Path(result.audio), dtype="float32")
    options = FAST.audio
    # loudness: within 1 LU of the audiobook target, true peak under its ceiling
    assert integrated_loudness(audio, rate) == pytest.approx(-18.0, abs=1.0)
    assert true_peak_db(audio, rate) <= -3.0
    # pauses: none longer than configured (+0.3 s), between chunks and inside them
    chunks = metadata(result)["chunks"]
    for c, d in itertools.pairwise(chunks):
        assert d["start"] - c["end"] <= options.pause(c["break_after"]) + 0.3
    for c in chunks:
        inside = audio[int(c["start"] * rate) : int(c["end"] * rate)]
        assert longest_inner_silence(inside, rate) <= options.max_inner_pause + 0.3
    # subtitles: in order, inside the audio, within the limits, heard when they say
    cues = parse_srt(Path(result.subtitles).read_text())
    assert cues and all(a[1] <= b[0] for a, b in itertools.pairwise(cues))
    assert cues[0][0] >= 0 and cues[-1][1] <= len(audio) / rate
    for start, end, lines in cues:
        assert len(lines) <= 2 and all(len(line) <= 42 for line in lines)
        span = audio[int(max(0, start - 0.3) * rate) : int((end + 0.3) * rate)]
        heard = worker.validator.transcribe(span, rate).text
        alignment = compare(" ".join(lines), heard)
        assert alignment.matches >= 0.75 * alignment.reference_words, (lines, heard)
    assert Path(result.subtitles).with_suffix(".vtt").read_text().startswith("WEBVTT")
    # delivery formats: as long as the WAV; the M4B's chapters start at the heading
    for kind in ("mp3", "m4b"):
        assert decoded_seconds(Path(result.audio).with_suffix(f".{kind}")) == pytest.approx(
            len(audio) / rate, abs=0.05
        )
    with av.open(str(Path(result.audio).with_suffix(".m4b"))) as m4b:
        assert [c["metadata"]["title"] for c in m4b.chapters()] == ["The Night Crossing"]
    # the whole-chapter check heard it, and found nothing wrong
    assert result.wer is not None and result.wer < 0.1 and result.validation_flagged == []
    assert json.loads((tmp_path / "out" / "validation.json").read_text())["flagged"] == []


def parse_srt(text: str) -> list[tuple[float, float, list[str]]]:
    def seconds(stamp: str) -> float:
        h, m, s = stamp.replace(",", ".").split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)

    cues = []
    for block in text.strip().split("\n\n"):
        _, times, *lines = block.splitlines()
        start, end = times.split(" --> ")
        cues.append((seconds(start), seconds(end), lines))
    return cues


def test_the_chapter_check_is_published_as_an_artifact(tmp_path: Path, cache: Path) -> None:
    """This run's own artifacts, by its flow run id: not whichever the shared server has."""
    source = tmp_path / "night-crossing.md"
    source.write_text(CHAPTER)
    state = narrate_chapter(str(source), str(tmp_path / "out"), None, FAST, return_state=True)
    validation = json.loads((tmp_path / "out" / "validation.json").read_text())
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
    by_key = {a.key: a for a in artifacts}
    assert set(by_key) == {
        "night-crossing-progress",
        "night-crossing-chunks",
        "night-crossing-summary",
        "night-crossing-validation",
    }
    report = str(by_key["night-crossing-validation"].data)
    assert "Whole-chapter check" in report and f"WER {100 * validation['wer']:.2f} %" in report


def test_the_fail_policy_fails_the_chapter_naming_low_chunks(tmp_path: Path, cache: Path) -> None:
    strict = NarrationOptions(
        generation=GenerationParams(n_candidates=1, max_retries=0, whisper_threshold=100),
        on_low_score="fail",
    )
    text = "# Zxqvb\n\nThe Vrendish quomp gnarfled Plorkwitz at dawn.\n"
    with pytest.raises(ValidationFailed, match=r"chunks \[.*1.*\] stayed below whisper_threshold"):
        narrate(tmp_path, text, strict)
    assert not (tmp_path / "out" / "night-crossing.wav").exists()
