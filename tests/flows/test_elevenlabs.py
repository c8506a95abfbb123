"""The ElevenLabs backend, end to end, against a stand-in for the API over a real socket
(local_endpoint/elevenlabs.py: the documented contract, real speech): the digest is narrated,
cached, validated by Whisper here, spread over the plan's concurrency, and follows the
account when it changes; errors say which; the key goes nowhere but its header."""

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client

from bench.elevenlabs_digest import STORIES
from flows.chapter import NarrationOptions, narrate_chapter
from gpu_worker.best_of_n import BestOfN
from gpu_worker.errors import InputError, PermanentError
from gpu_worker.schema import GenerateRequest, GenerationParams
from gpu_worker.scoring import compare
from local_endpoint.elevenlabs import FORMATS, FakeElevenLabs
from tasks.backends import elevenlabs as backend_module
from tasks.backends.elevenlabs import ElevenLabsEngine, PlanWindow
from tasks.cast import Role, read_cast
from tasks.settings import NarratorSettings

KEY = "xi_PLANTED_elevenlabs_key_7c2e91d0"
OPTIONS = NarrationOptions(
    generation=GenerationParams(n_candidates=1, max_retries=1), validate_chapter=False, formats=[]
)


@pytest.fixture
def fake(
    serve: Callable[[Any], str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> FakeElevenLabs:
    service = FakeElevenLabs(key=KEY, voices={"narrator-id": "heart", "guest-id": "joe"})
    for name, value in {
        "BACKEND": "elevenlabs",
        "ELEVENLABS_BASE_URL": serve(service.app),
        "ELEVENLABS_API_KEY": KEY,
        "CACHE_DIR": str(tmp_path / "cache"),
    }.items():
        monkeypatch.setenv(f"NARRATOR_{name}", value)
    return service


def digest(tmp_path: Path, stories: list[str]) -> Path:
    path = tmp_path / "digest.md"
    path.write_text("# Today\n\n" + "\n\n".join(stories) + "\n")
    return path


@pytest.mark.usefixtures("prefect_server")
def test_a_digest_is_narrated_cached_and_edited_for_one_call(
    fake: FakeElevenLabs, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    result = narrate_chapter(
        str(digest(tmp_path, STORIES)), str(tmp_path / "out"), "narrator-id", OPTIONS
    )
    assert result.chunks == len(fake.answered()) >= len(STORIES)  # one take each
    assert result.flagged == [] and result.cache_hits == 0
    assert {r.voice_id for r in fake.received} == {"narrator-id"}
    assert all(r.body["model_id"] == "eleven_multilingual_v2" for r in fake.received)
    by_text = {r.text: r.body for r in fake.answered()}
    harbour, boat = (next(t for t in by_text if word in t) for word in ("harbour", "fishing"))
    assert by_text[boat]["previous_text"] == harbour  # prosody continues across the join
    assert by_text[harbour]["next_text"] == boat

    billed = json.loads(Path(result.metadata).read_text())["chunks"]
    estimate = sum(len(r.text) for r in fake.answered())  # one take each, as estimated
    assert f"about {estimate:,} characters billed" in caplog.text
    assert sum(c["characters_sent"] for c in billed) == sum(len(r.text) for r in fake.answered())

    calls = len(fake.received)
    source = str(digest(tmp_path, STORIES))
    again = narrate_chapter(source, str(tmp_path / "out"), "narrator-id", OPTIONS)
    assert len(fake.received) == calls  # a rerun makes no API call
    rerun = json.loads(Path(again.metadata).read_text())["chunks"]
    assert sum(c["characters_sent"] for c in rerun) == 0

    edited = [*STORIES[:3], STORIES[3].replace("next week", "on Thursday"), *STORIES[4:]]
    narrate_chapter(str(digest(tmp_path, edited)), str(tmp_path / "out"), "narrator-id", OPTIONS)
    new = fake.received[calls:]
    assert len(new) == 1 and "on Thursday" in new[0].text


@pytest.mark.usefixtures("prefect_server")
def test_a_lowered_plan_is_absorbed_and_followed(fake: FakeElevenLabs, tmp_path: Path) -> None:
    """The account drops from 4 requests at once to 2 mid-run: the 429s it answers are
    waited out, not failed nor stormed, and what follows keeps to 2."""
    fake.concurrency, fake.latency = 4, 0.6

    def lower() -> None:
        while len(fake.received) < 3:
            time.sleep(0.01)
        fake.concurrency = 2

    threading.Thread(target=lower, daemon=True).start()
    stories = [*STORIES, *(s.replace("The ", "This year the ", 1) for s in STORIES)]
    result = narrate_chapter(
        str(digest(tmp_path, stories)), str(tmp_path / "out"), "narrator-id", OPTIONS
    )

    assert result.flagged == [] and len(fake.answered()) == result.chunks
    refused = fake.answered(429)
    assert refused, "the lowered plan should have refused some requests"
    assert len(refused) <= result.chunks  # each waited for a slot: no storm
    after = [r for r in fake.received if r.started > refused[-1].started]
    assert after and max(r.in_flight for r in after) <= 2


@pytest.mark.usefixtures("prefect_server")
def test_one_request_at_a_time_each_chunk_sends_the_last_ones_request_id(
    fake: FakeElevenLabs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NARRATOR_ELEVENLABS_CONCURRENCY", "1")
    fake.concurrency = 1
    narrate_chapter(
        str(digest(tmp_path, STORIES[:3])), str(tmp_path / "out"), "narrator-id", OPTIONS
    )
    said = fake.answered()
    ids = {r.text: r.request_id for r in said}
    following = [r for r in said if r.body.get("previous_text")]
    assert len(following) == len(said) - 1  # all but the first chunk
    # one at a time, about in reading order: a chunk whose predecessor was said first
    # carries that take's request id (the first two may start in either order)
    carried = [r for r in following if "previous_request_ids" in r.body]
    assert len(carried) >= len(following) - 1
    for request in carried:
        assert request.body["previous_request_ids"] == [ids[request.body["previous_text"]]]


@pytest.mark.usefixtures("prefect_server")
def test_each_speaker_is_read_with_their_voice_id(fake: FakeElevenLabs, tmp_path: Path) -> None:
    chapter = tmp_path / "interview.md"
    chapter.write_text(
        "# Interview\n\nThe keeper spoke to our reporter at the lighthouse.\n\n"
        "GUEST: I have kept this light for forty years.\n\n"
        "The lamp still turns every night.\n"
    )
    cast = read_cast(
        '[narrator]\nvoice = "narrator-id"\n[speakers.GUEST]\nvoice = "guest-id"\n'
        "voice_settings = { stability = 0.3, style = 0.6 }\n",
        "cast.toml",
    )
    narrate_chapter(str(chapter), str(tmp_path / "out"), None, OPTIONS, cast)
    voices = {r.text: r.voice_id for r in fake.answered()}
    assert [v for t, v in voices.items() if "forty years" in t] == ["guest-id"]
    assert {v for t, v in voices.items() if "forty years" not in t} == {"narrator-id"}
    guest = next(r.body for r in fake.answered() if "forty years" in r.text)
    assert "previous_text" not in guest and "next_text" not in guest  # another voice's lines
    # the guest's own settings over the run's; the narrator's are the run's
    run = NarratorSettings()
    assert guest["voice_settings"] == {
        "stability": 0.3,
        "similarity_boost": run.elevenlabs_similarity_boost,
        "style": 0.6,
        "use_speaker_boost": run.elevenlabs_speaker_boost,
        "speed": 1.0,
    }
    narration = next(r.body for r in fake.answered() if "every night" in r.text)
    assert narration["voice_settings"]["stability"] == run.elevenlabs_stability

    # new settings for the guest re-ask the guest's chunk only
    before = len(fake.received)
    calmer = cast.model_copy(
        update={"speakers": {"GUEST": Role(voice="guest-id", voice_settings={"stability": 0.9})}}
    )
    narrate_chapter(str(chapter), str(tmp_path / "out"), None, OPTIONS, calmer)
    asked = [r for r in fake.received[before:] if r.status == 200]
    assert asked and {r.voice_id for r in asked} == {"guest-id"}  # its takes, nothing else
    assert {r.body["voice_settings"]["stability"] for r in asked} == {0.9}


@pytest.mark.usefixtures("prefect_server")
def test_the_key_appears_in_no_output_log_artifact_or_parameter(
    fake: FakeElevenLabs, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    narrate_chapter(str(digest(tmp_path, STORIES[:2])), str(out), "narrator-id", OPTIONS)
    with pytest.raises(PermanentError, match="voice_id nobody was not found") as unknown:
        narrate_chapter(str(digest(tmp_path, STORIES[2:3])), str(tmp_path / "x"), "nobody", OPTIONS)
    seen = [("error", str(unknown.value))]
    for folder in (out, tmp_path / "cache"):
        files = [p for p in folder.rglob("*") if p.is_file()]
        seen += [(str(p), p.read_bytes().decode("latin-1")) for p in files]
    with get_client(sync_client=True) as prefect:
        for run in prefect.read_flow_runs():
            seen.append((f"run {run.name}", repr(run.parameters) + repr(run.state)))
        seen += [("log", entry.message) for entry in prefect.read_logs()]
        seen += [(f"artifact {a.key}", repr(a.data)) for a in prefect.read_artifacts()]
    assert len(seen) > 10 and "nobody" in seen[0][1]
    assert "nobody" in fake.voice_lookups  # asked once, before any take was paid for
    assert all(r.voice_id != "nobody" for r in fake.received)
    assert [where for where, text in seen if KEY in text] == []
    assert all(r.body.get("text") for r in fake.received)  # the key went in a header only


def engine(fake_url: str, key: str = KEY, limit: str = "") -> ElevenLabsEngine:
    """The engine alone (no Prefect limit unless `limit` names one)."""
    settings = NarratorSettings(
        elevenlabs_base_url=fake_url, elevenlabs_timeout=30, elevenlabs_limit=limit
    )
    return ElevenLabsEngine(settings, key, PlanWindow(settings.elevenlabs_concurrency))


@pytest.mark.usefixtures("prefect_server")
def test_two_processes_on_one_account_keep_to_its_plan_together(
    serve: Callable[[Any], str],
) -> None:
    """Two engines with windows of their own (two machines' runs) share the account's
    Prefect limit: the plan of 2 is never exceeded, so the API refuses nothing."""
    service = FakeElevenLabs(key=KEY, concurrency=2, latency=1.0)
    url = serve(service.app)
    machines = [engine(url, limit="elevenlabs-shared-test") for _ in range(2)]
    machines[0].size_account_limit(2)  # as a run's start does (ElevenLabsBackend.prepare)
    texts = [f"Story {word} is told." for word in "one two three four five six".split()]

    def speak(machine: ElevenLabsEngine, text: str) -> None:
        machine.synthesize(GenerateRequest(text=text, voice="narrator-id"), 1)

    threads = [
        threading.Thread(target=speak, args=(machines[i % 2], text)) for i, text in enumerate(texts)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(service.answered()) == 6 and service.answered(429) == []
    assert max(r.in_flight for r in service.received) == 2
    assert all(m.window.peak == 2 for m in machines) is False  # shared, not 2 each


@pytest.mark.parametrize(
    ("setup", "error", "message"),
    [
        (lambda f: setattr(f, "key", "another"), PermanentError, "refused the API key"),
        (lambda f: setattr(f, "characters_left", 3), PermanentError, "out of credits"),
        (lambda f: f.voices.clear(), InputError, "voice 'narrator-id'.*was not found"),
    ],
    ids=["bad key", "out of credits", "unknown voice"],
)
def test_what_no_retry_mends_fails_at_once_saying_which(
    setup: Callable[[FakeElevenLabs], None],
    error: type[Exception],
    message: str,
    serve: Callable[[Any], str],
) -> None:
    service = FakeElevenLabs(key=KEY)
    url = serve(service.app)
    setup(service)
    with pytest.raises(error, match=message):
        engine(url).synthesize(GenerateRequest(text="The tide is out.", voice="narrator-id"), 1)
    assert len(service.received) == 1  # not retried


def test_a_busy_service_is_backed_off_and_the_window_halved(
    serve: Callable[[Any], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backend_module, "BUSY_DELAYS", (0.01,))
    service = FakeElevenLabs(key=KEY, busy_first=2)
    speaker = engine(serve(service.app))
    audio = speaker.synthesize(GenerateRequest(text="The tide is out.", voice="narrator-id"), 1)
    assert audio.size > 24000 * 0.5
    assert [r.status for r in service.received] == [429, 429, 200]
    assert speaker.characters == len("The tide is out.")  # a refused request is not billed
    assert int(speaker.window.window) < speaker.window.ceiling  # halved, recovering


@pytest.mark.usefixtures("prefect_server")
def test_a_redo_asks_again_for_that_chunk_only_with_a_new_seed(
    fake: FakeElevenLabs, tmp_path: Path
) -> None:
    from flows.redo import redo_chunks

    # n_candidates left unset: one take a chunk on a backend that bills each one
    options = NarrationOptions(validate_chapter=False, formats=[])
    narrate_chapter(str(digest(tmp_path, STORIES)), str(tmp_path / "out"), "narrator-id", options)
    asked = fake.answered()
    calls = len(fake.received)
    redo_chunks(str(tmp_path / "out"), [2])
    (again,) = fake.received[calls:]
    (first,) = [r for r in asked if r.text == again.text]
    assert again.body["seed"] != first.body["seed"]
    metadata = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert [c["take"] for c in metadata["chunks"]][:4] == [0, 0, 1, 0]
    assert metadata["chunks"][2]["characters_sent"] == len(again.text)


def test_a_plan_without_pcm_is_told_the_setting_and_mp3_is_decoded(
    serve: Callable[[Any], str], worker: BestOfN
) -> None:
    service = FakeElevenLabs(key=KEY, formats=("mp3_44100_128",))
    url = serve(service.app)
    request = GenerateRequest(text="The tide is out and the boats are home.", voice="narrator-id")
    with pytest.raises(InputError, match="NARRATOR_ELEVENLABS_OUTPUT_FORMAT=mp3_44100_128"):
        engine(url).synthesize(request, 1)
    settings = NarratorSettings(
        elevenlabs_base_url=url,
        elevenlabs_timeout=30,
        elevenlabs_output_format="mp3_44100_128",
        elevenlabs_limit="",
    )
    lossy = ElevenLabsEngine(settings, KEY, PlanWindow(2))
    audio = lossy.synthesize(request, 1)
    service.formats = FORMATS
    lossless = engine(url).synthesize(request, 1)
    assert lossy.sample_rate == 24000
    assert audio.size / 24000 == pytest.approx(lossless.size / 24000, abs=0.05)
    heard = worker.validator.transcribe(audio, 24000).text
    assert compare(request.text, heard).wer == 0.0
    assert lossy.identity("narrator-id") != engine(url).identity("narrator-id")  # own cache
