"""The worker against the real chatterbox-tts 0.1.7 code, on the CPU (`make chatterbox-test`).

Skipped where chatterbox is not importable, as in CI. The models are the library's own
classes with random weights and a shrunk T3 (tiny_chatterbox.py), written once in the
layout the deploy guide's download writes, and loaded from there the way a worker loads
them: each defect the pinned release has with our engine has a test here that fails
without its fix (deployments/runpod.md, gpu_worker/engines/chatterbox.py's docstring).
"""

import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("chatterbox", reason="chatterbox-tts is in the gpu extra only")

import torch

from bench.chatterbox_gpu import reference_clip
from gpu_worker.engines import chatterbox as engine_module
from gpu_worker.engines import t3_batch
from gpu_worker.engines.chatterbox import ChatterboxEngine
from gpu_worker.errors import InputError
from gpu_worker.schema import GenerateRequest
from gpu_worker.settings import WorkerSettings
from gpu_worker.weights import chatterbox_dir, whisper_dir
from tests.gpu_worker.tiny_chatterbox import shrink, site_dir

ROOT = Path(__file__).parents[2]
ANALYZER_LAYERS = (9, 12, 13)  # chatterbox's LLAMA_ALIGNED_HEADS


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A network volume as the guide leaves it: models/ from the download step (here the
    tiny random ones) and voices/zen.wav from the upload step."""
    root = tmp_path_factory.mktemp("runpod-volume")
    (root / "voices").mkdir()
    clip = root / "voices" / "zen.wav"
    reference_clip(clip, seconds=4.0)
    built = subprocess.run(
        [sys.executable, "-m", "tests.gpu_worker.tiny_chatterbox", root / "models", clip],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return root


def settings_for(volume: Path, multilingual: bool) -> WorkerSettings:
    return WorkerSettings(
        engine="chatterbox",
        device="cpu",
        chatterbox_dir=chatterbox_dir(volume / "models", multilingual),
        chatterbox_multilingual=multilingual,
        voices_root=volume / "voices",
        voice_cache_dir=volume / "cache",
    )


@pytest.fixture(scope="module")
def shrunk() -> None:
    shrink()


@pytest.fixture(scope="module")
def english(volume: Path, shrunk: None) -> ChatterboxEngine:
    return ChatterboxEngine.load(settings_for(volume, multilingual=False))


@pytest.fixture(scope="module")
def multilingual(volume: Path, shrunk: None) -> ChatterboxEngine:
    return ChatterboxEngine.load(settings_for(volume, multilingual=True))


@pytest.fixture
def short_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Random weights never stop by themselves: a few tokens a take keep the CPU tier quick."""
    monkeypatch.setattr(engine_module, "token_budget", lambda text: 6)


def analyzer_hooks(engine: ChatterboxEngine) -> list[int]:
    layers = engine.model.t3.tfmr.layers
    hooks = [layers[i].self_attn._forward_hooks.values() for i in ANALYZER_LAYERS]
    return [sum("AlignmentStreamAnalyzer" in h.__qualname__ for h in layer) for layer in hooks]


def test_the_multilingual_analyzer_leaves_nothing_behind_over_five_calls(
    multilingual: ChatterboxEngine, short_takes: None
) -> None:
    """Upstream #504: +3 hooks and eager attention per call, never removed (0.49x to 3.46x
    real time after ~108 syntheses). After each of 5 syntheses: no hook, sdpa again."""
    request = GenerateRequest(text="Hello there.", n_candidates=1)
    conditionals = multilingual._conditionals(request)
    text, ids = multilingual._text_tokens(request)
    config = multilingual.model.t3.tfmr.config
    for seed in range(5):
        with torch.inference_mode():
            tokens = multilingual._library_tokens(request, conditionals, text, ids, seed)
        assert tokens.numel() > 0
        assert analyzer_hooks(multilingual) == [0, 0, 0]
        assert (config._attn_implementation, config.output_attentions) == ("sdpa", False)


def test_the_default_voice_survives_a_cloned_one(english: ChatterboxEngine) -> None:
    """prepare_conditionals overwrites model.conds: without the fix, a request with no clip
    got the last cloned voice, cached under the default voice's key."""
    default = GenerateRequest(text="Hello there.")
    cloned = GenerateRequest(text="Hello there.", audio_prompt_url="zen-fast.wav")
    clip, rate = sf.read(english.settings.voices_root / "zen.wav")
    sf.write(
        english.settings.voices_root / "zen-fast.wav", clip[::-1].copy(), rate
    )  # another voice
    before = english._conditionals(default).t3.speaker_emb.clone()
    clone = english._conditionals(cloned).t3.speaker_emb.clone()
    after = english._conditionals(default).t3.speaker_emb
    assert not torch.equal(before, clone)
    assert torch.equal(before, after)
    assert english.voices() == ["default"]


@pytest.mark.parametrize("model", ["english", "multilingual"])
def test_ids_that_are_not_speech_never_reach_s3gen(
    model: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3Gen's embedding has 6561 rows: an id at or above it is a device-side assert on CUDA
    (the CUDA context is lost) and an IndexError here. The library filters only the English
    model's tokens; both engines must."""
    engine: ChatterboxEngine = request.getfixturevalue(model)
    seen: list[torch.Tensor] = []
    inference = engine.model.s3gen.inference

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["speech_tokens"].clone())
        return inference(*args, **kwargs)

    monkeypatch.setattr(engine.model.s3gen, "inference", spy)
    conditionals = engine._conditionals(GenerateRequest(text="Hi."))
    tokens = torch.tensor([6561, 10, 7000, 20, 8193, 30, 40, 6562])  # start, stray, stop
    with torch.inference_mode():
        audio = engine._vocode(tokens, conditionals, seed=1)
    assert audio.size > 0
    assert seen[0].tolist() == [10, 20, 30, 40]


def test_the_watermark_is_applied_inside_inference_mode(
    english: ChatterboxEngine, short_takes: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside it, the watermarker's network records autograd state for every candidate."""
    modes: list[bool] = []
    apply = english.model.watermarker.apply_watermark

    def spy(*args: Any, **kwargs: Any) -> Any:
        modes.append(torch.is_inference_mode_enabled())
        return apply(*args, **kwargs)

    monkeypatch.setattr(english.model.watermarker, "apply_watermark", spy)
    english.synthesize_batch(GenerateRequest(text="Hello there."), [1, 2])
    assert modes == [True, True]


def stop_biased(engine: ChatterboxEngine, monkeypatch: pytest.MonkeyPatch, logit: float) -> None:
    """A speech head that favours the stop token by `logit`: random weights then stop after a
    random number of steps, different for each seed, as real takes do."""
    t3 = engine.model.t3
    head = torch.nn.Linear(t3.speech_head.in_features, t3.speech_head.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(t3.speech_head.weight)
        head.bias.zero_()
        head.bias[t3.hp.stop_speech_token] = logit
    monkeypatch.setattr(t3, "speech_head", head.eval())


def test_a_runaway_take_no_longer_holds_its_round(
    english: ChatterboxEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the cut, a round lasts as long as its longest take (up to 1,000 tokens, 40 s).
    With it, once half the takes have stopped the rest get 1.5x the longest stopped one; the
    takes that stopped are exactly what they were without the cut."""
    stop_biased(english, monkeypatch, logit=5.0)
    conditionals = english._conditionals(GenerateRequest(text="Hi."))
    _, ids = english._text_tokens(GenerateRequest(text="Hello there, keeper."))
    settings: dict[str, Any] = dict(
        max_new_tokens=160, temperature=1.0, cfg_weight=0.5, repetition_penalty=1.2,
        min_p=0.0, top_p=1.0, check_every=4,
    )  # fmt: skip
    seeds = [1, 2, 3, 4, 5, 6]
    stop = english.model.t3.hp.stop_speech_token
    with torch.inference_mode():
        free = t3_batch.decode(english.model.t3, conditionals.t3, ids, seeds, **settings)
        cut = t3_batch.decode(
            english.model.t3, conditionals.t3, ids, seeds, runaway_floor=8, **settings
        )
    finished = sorted(len(row) for row in free if int(row[-1]) == stop)
    assert len(finished) >= len(seeds) // 2, "the bias should stop most takes"
    longest_of_half = finished[len(seeds) // 2 - 1 + (len(seeds) % 2)]
    limit = max(8, int(1.5 * longest_of_half)) + settings["check_every"]
    assert max(len(row) for row in free) > limit, "no runaway among these seeds: pick others"
    assert max(len(row) for row in cut) <= limit
    for before, after in zip(free, cut, strict=True):
        if int(before[-1]) == stop and len(before) <= max(len(row) for row in cut):
            assert torch.equal(before, after)


def test_the_budget_of_a_usual_chunk_is_below_the_ceiling() -> None:
    """The old budget was the 1,000-token ceiling for anything over ~110 characters."""
    chunk = "The keeper climbed the stair at dusk, as he had every evening for forty years. " * 3
    assert 200 < len(chunk) < 300
    usual_reading = len(chunk) / 14 * engine_module.TOKENS_PER_SECOND
    assert usual_reading < engine_module.token_budget(chunk) < engine_module.MAX_NEW_TOKENS


def test_a_watermarker_that_did_not_import_is_one_clear_line(
    volume: Path, shrunk: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """resemble-perth imports pkg_resources; with setuptools 81+ its class is None and the
    library's constructor fails with "'NoneType' object is not callable"."""
    import perth

    monkeypatch.setattr(perth, "PerthImplicitWatermarker", None)
    with pytest.raises(InputError, match=r"setuptools<81"):
        ChatterboxEngine.load(settings_for(volume, multilingual=False))


def test_a_volume_that_is_not_attached_is_one_clear_line(volume: Path, tmp_path: Path) -> None:
    settings = settings_for(volume, multilingual=False).model_copy(
        update={"chatterbox_dir": tmp_path / "runpod-volume" / "models" / "chatterbox"}
    )
    with pytest.raises(InputError, match=r"does not exist: attach the network volume"):
        ChatterboxEngine.load(settings)


def test_a_model_folder_missing_a_file_names_it(volume: Path, tmp_path: Path) -> None:
    partial = tmp_path / "chatterbox-multilingual"
    partial.mkdir()
    (partial / "ve.pt").write_bytes(b"")
    settings = settings_for(volume, multilingual=True).model_copy(
        update={"chatterbox_dir": partial}
    )
    with pytest.raises(InputError, match=r"lacks t3_mtl23ls_v2.safetensors, .*Cangjie5_TC.json"):
        ChatterboxEngine.load(settings)


def worker_env(volume: Path, tmp_path: Path, multilingual: bool) -> dict[str, str]:
    """The image's environment (gpu_worker/Dockerfile) on this volume, on the CPU."""
    models = volume / "models"
    return {
        **os.environ,
        "PYTHONPATH": f"{site_dir(tmp_path / 'site')}:{ROOT}",
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),  # empty: nothing may come from a hub cache
        "PKUSEG_HOME": str(tmp_path / "pkuseg"),  # empty: nor from ~/.pkuseg
        "NARRATOR_ENGINE": "chatterbox",
        "NARRATOR_DEVICE": "cpu",
        "NARRATOR_CHATTERBOX_DIR": str(chatterbox_dir(models, multilingual)),
        "NARRATOR_CHATTERBOX_MULTILINGUAL": str(multilingual).lower(),
        "NARRATOR_WHISPER_MODEL": str(whisper_dir(models, "tiny.en")),
        "NARRATOR_VOICES_ROOT": str(volume / "voices"),
        "NARRATOR_VOICE_CACHE_DIR": str(tmp_path / "voice-cache"),
    }


def guide_request() -> dict[str, Any]:
    """deployments/runpod.md's first request: gpu_worker/test_input.json with the uploaded
    clip, named as the guide names it (relative to the volume's voices/ folder)."""
    job = json.loads((ROOT / "gpu_worker" / "test_input.json").read_text())
    job["input"].update(audio_prompt_url="zen.wav", n_candidates=1, max_retries=0)
    return job


@pytest.mark.parametrize("multilingual", [False, True], ids=["english", "multilingual"])
def test_the_worker_starts_with_no_network_from_the_guides_layout(
    volume: Path, tmp_path: Path, multilingual: bool
) -> None:
    """The handler in a network namespace of its own (no route anywhere), offline hub, empty
    hub and pkuseg caches: it loads everything from the volume and answers the guide's job."""
    done = subprocess.run(
        [
            "unshare",
            "--net",
            sys.executable,
            "-m",
            "gpu_worker.handler",
            "--test_input",
            json.dumps(guide_request()),
        ],
        cwd=ROOT,
        env=worker_env(volume, tmp_path, multilingual),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "completed successfully" in done.stdout
    assert not (tmp_path / "pkuseg").exists()  # pkuseg read the volume's copy
    assert not list((tmp_path / "hf").rglob("models--*"))  # nothing came from a hub


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def endpoint(volume: Path, tmp_path: Path) -> Iterator[str]:
    """`narrator endpoint` running the handler with the chatterbox engine on the volume."""
    port = free_port()
    env = {**worker_env(volume, tmp_path, multilingual=False), "NARRATOR_ENDPOINT_API_KEY": "k"}
    narrator = Path(sys.executable).parent / "narrator"
    server = subprocess.Popen(
        [narrator, "endpoint", "--workers", "1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/v2/local"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and server.poll() is None:
            try:
                httpx.get(f"{url}/health", headers={"authorization": "Bearer k"}, timeout=2)
                break
            except httpx.TransportError:
                time.sleep(1)
        assert server.poll() is None, server.stderr.read() if server.stderr else ""
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_guides_example_request_succeeds_against_narrator_endpoint(endpoint: str) -> None:
    """The guide's curl: POST /runsync with test_input.json and the uploaded clip's name."""
    answer = httpx.post(
        f"{endpoint}/runsync?wait=120000",
        headers={"authorization": "Bearer k"},
        json=guide_request(),
        timeout=600,
    ).json()
    assert answer["status"] == "COMPLETED", answer
    output = answer["output"]
    audio, rate = sf.read(io.BytesIO(base64.b64decode(output["audio_base64"])))
    assert rate == 24000 and audio.size > 0 and np.isfinite(audio).all()
    assert output["metadata"]["candidates_generated"] == 1
