"""The Chatterbox engine with random-initialised weights (speed and plumbing, not quality).

Skipped where chatterbox-tts (the `gpu` extra) is not installed, as in CI; runs on CPU or
GPU. The weights are random, so the model never stops by itself: token budgets are small.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("chatterbox", reason="chatterbox-tts is in the gpu extra only")

import torch

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
from chatterbox_gpu import random_engine, reference_clip

from gpu_worker.engines import chatterbox as engine_module
from gpu_worker.engines import t3_batch
from gpu_worker.schema import GenerateRequest

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    workdir = tmp_path_factory.mktemp("chatterbox")
    reference_clip(workdir / "voice.wav")
    torch.manual_seed(0)
    return random_engine(DEVICE, workdir, "float32")


def request(**fields: object) -> GenerateRequest:
    return GenerateRequest(text="The light came round.", audio_prompt_url="voice.wav", **fields)  # type: ignore[arg-type]


def test_batched_decoding_matches_the_library_loop(engine) -> None:  # type: ignore[no-untyped-def]
    """With min_p = 1 only the likeliest token survives, so sampling is greedy in both loops:
    every batched row must equal the library's own one-candidate loop, step for step (same
    prompt, guidance, repetition penalty and KV-cache handling)."""
    conditionals = engine._conditionals(request())
    _, ids = engine._text_tokens(request())
    settings = dict(temperature=1.0, cfg_weight=0.5, repetition_penalty=1.2, min_p=1.0, top_p=1.0)
    with torch.inference_mode():
        library = engine.model.t3.inference(
            t3_cond=conditionals.t3,
            text_tokens=torch.cat([ids, ids]),
            max_new_tokens=24,
            stop_on_eos=False,
            **settings,
        )[0]
        rows = t3_batch.decode(
            engine.model.t3,
            conditionals.t3,
            ids,
            [1, 2, 3],
            max_new_tokens=24,
            stop_on_eos=False,
            **settings,
        )
    assert library.numel() == 24
    assert all(torch.equal(row.cpu(), library.cpu()) for row in rows)


def test_a_candidate_depends_on_its_seed_not_its_batch(engine) -> None:  # type: ignore[no-untyped-def]
    """A seed's tokens are the same alone or in a batch (measured on an H100 too: identical
    over 200 tokens); the same request twice gives bit-identical audio."""
    conditionals = engine._conditionals(request())
    _, ids = engine._text_tokens(request())
    settings = dict(
        temperature=0.8,
        cfg_weight=0.5,
        repetition_penalty=1.2,
        min_p=0.05,
        top_p=1.0,
        max_new_tokens=40,
        stop_on_eos=False,
    )
    with torch.inference_mode():
        alone = t3_batch.decode(engine.model.t3, conditionals.t3, ids, [7], **settings)[0]
        together = t3_batch.decode(engine.model.t3, conditionals.t3, ids, [5, 7, 9], **settings)
    assert torch.equal(alone, together[1])
    assert not torch.equal(together[0], together[1])


def test_the_same_request_gives_the_same_audio(engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Bit-identical on CPU; on an H100 within 8e-6 (the vocoder's GPU kernels round
    differently on a first call), below one step of 16-bit PCM (3e-5)."""
    monkeypatch.setattr(engine_module, "token_budget", lambda text: 10)
    first = engine.synthesize_batch(request(), [5, 7])
    again = engine.synthesize_batch(request(), [5, 7])
    assert all(
        a.shape == b.shape and np.allclose(a, b, rtol=0, atol=1e-4)
        for a, b in zip(first, again, strict=True)
    )
    assert not np.array_equal(first[0], first[1])
    assert all(a.dtype == np.float32 and a.size > 0 for a in first)


def test_the_token_budget_follows_the_text() -> None:
    """Longer text, more tokens, never past the library's ceiling; a usual reading of a
    chunk always fits (the budget is a slow reading plus two seconds)."""
    budget, ceiling = engine_module.token_budget, engine_module.MAX_NEW_TOKENS
    assert 0 < budget("Hi.") < budget("x" * 100) < budget("x" * 250) < ceiling
    assert budget("x" * 2000) == ceiling
    assert all(engine_module.typical_tokens("x" * n) < budget("x" * n) for n in (3, 100, 250))
