"""Chatterbox speed through narrator's ChatterboxEngine, with random-initialised weights.

No hub is reachable from the GPU machines, but speed does not depend on weight values: T3,
S3Gen and the voice encoder are constructed directly, with a small word-level tokenizer.
Random weights never emit the stop token, so every candidate runs to its token budget,
which `--tokens` sets (25 tokens are about one second of audio).

    python bench/chatterbox_gpu.py --device cuda --tokens 250 --repeats 3

Prints one table: per configuration, speech tokens per second in T3, seconds in T3 and in
S3Gen, and the real-time factor (wall seconds per second of audio; below 1 is faster than
real time). "library loop" is chatterbox-tts's own T3.inference, one candidate at a time;
"narrator loop" is gpu_worker/engines/t3_batch.py, one at a time or all of a round batched.
"""

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf


def build_tokenizer(path: Path) -> None:
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    specials = ["[STOP]", "[UNK]", "[SPACE]", "[PAD]", "[SEP]", "[CLS]", "[MASK]"]
    vocab = {token: i for i, token in enumerate(specials)}
    for char in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"-()":
        vocab[char] = len(vocab)
    vocab["[START]"] = 255
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"\[SPACE\]|."), "isolated")
    tokenizer.save(str(path))


def reference_clip(path: Path, seconds: float = 8.0, rate: int = 24000) -> None:
    """A voiced-like signal: harmonics of a wavering pitch, syllable-rate envelope, breath."""
    t = np.arange(int(seconds * rate)) / rate
    pitch = 140 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    noise = 0.02 * np.random.default_rng(0).standard_normal(t.size)
    sf.write(path, (0.2 * voice * envelope + noise).astype(np.float32), rate)


def random_engine(device: str, workdir: Path, dtype: str):  # type: ignore[no-untyped-def]
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.t3 import T3
    from chatterbox.models.tokenizers import EnTokenizer
    from chatterbox.models.voice_encoder import VoiceEncoder
    from chatterbox.tts import ChatterboxTTS

    from gpu_worker.engines.chatterbox import ChatterboxEngine
    from gpu_worker.settings import WorkerSettings

    build_tokenizer(workdir / "tokenizer.json")
    model = ChatterboxTTS(
        T3().to(device).eval(),
        S3Gen().to(device).eval(),
        VoiceEncoder().to(device).eval(),
        EnTokenizer(str(workdir / "tokenizer.json")),
        device,
    )
    settings = WorkerSettings(
        engine="chatterbox",
        device=device,
        dtype=dtype,  # type: ignore[arg-type]
        voices_root=workdir,
        voice_cache_dir=workdir / "cache",
    )
    engine = ChatterboxEngine(model, settings, weights="random-init")
    engine.stop_on_eos = False
    return engine


class Timer:
    """Seconds spent in T3 (either loop) and in S3Gen, and tokens made, while installed."""

    def __init__(self, engine, device: str) -> None:  # type: ignore[no-untyped-def]
        from gpu_worker.engines import t3_batch

        self.engine, self.device, self.t3_batch = engine, device, t3_batch
        self.t3 = self.s3gen = self.tokens = 0.0
        self.originals = (engine.model.t3.inference, engine.model.s3gen.inference, t3_batch.decode)

    def sync(self) -> None:
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def wrap(self, fn, kind: str):  # type: ignore[no-untyped-def]
        def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.sync()
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            self.sync()
            elapsed = time.perf_counter() - start
            if kind == "s3gen":
                self.s3gen += elapsed
            else:
                self.t3 += elapsed
                rows = out if isinstance(out, list) else [out[0]]
                self.tokens += sum(row.shape[-1] for row in rows)
            return out

        return timed

    def __enter__(self) -> "Timer":
        library, s3gen, batched = self.originals
        self.engine.model.t3.inference = self.wrap(library, "t3")
        self.engine.model.s3gen.inference = self.wrap(s3gen, "s3gen")
        self.t3_batch.decode = self.wrap(batched, "t3")
        return self

    def __exit__(self, *exc: object) -> None:
        library, s3gen, batched = self.originals
        self.engine.model.t3.inference, self.engine.model.s3gen.inference = library, s3gen
        self.t3_batch.decode = batched


def library_loop(engine, request, seeds: list[int]) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    """The stock one-candidate T3.inference loop, one candidate after another."""
    import torch

    conditionals = engine._conditionals(request)
    text, ids = engine._text_tokens(request)
    with torch.inference_mode():
        return [
            engine._vocode(
                engine._library_tokens(request, conditionals, text, ids, seed), conditionals, seed
            )
            for seed in seeds
        ]


def measure(name: str, make, engine, device: str, repeats: int, candidates: int):  # type: ignore[no-untyped-def]
    rows = []
    for repeat in range(repeats):
        seeds = list(range(100 * repeat, 100 * repeat + candidates))
        with Timer(engine, device) as timer:
            start = time.perf_counter()
            audio = make(seeds)
            timer.sync()
            wall = time.perf_counter() - start
        seconds = sum(a.size for a in audio) / engine.sample_rate
        rows.append(
            {
                "t3_s": timer.t3,
                "s3gen_s": timer.s3gen,
                "tokens": timer.tokens,
                "audio_s": seconds,
                "wall_s": wall,
            }
        )
    best = sorted(rows, key=lambda r: r["wall_s"])[len(rows) // 2]  # the median run
    return {
        "configuration": name,
        "candidates": candidates,
        "t3_tokens_per_s": best["tokens"] / best["t3_s"],
        **best,
        "rtf": best["wall_s"] / best["audio_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tokens", type=int, default=250, help="speech tokens per candidate")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    try:
        import chatterbox  # noqa: F401 - the gpu extra: torch and chatterbox-tts
        import torch
    except ImportError as e:
        raise SystemExit(
            f"bench/chatterbox_gpu.py needs the gpu extra (pip install -e '.[gpu]'): {e}"
        ) from None
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("bench/chatterbox_gpu.py: no CUDA device here; give --device cpu")

    from gpu_worker.engines import chatterbox as chatterbox_engine
    from gpu_worker.schema import GenerateRequest

    chatterbox_engine.token_budget = lambda text: args.tokens  # fixed length for timing
    workdir = Path(tempfile.mkdtemp())
    reference_clip(workdir / "voice.wav")
    started = time.perf_counter()
    engine = random_engine(args.device, workdir, args.dtype)
    load_seconds = time.perf_counter() - started
    request = GenerateRequest(
        text="The light came round once every ten seconds.", audio_prompt_url="voice.wav"
    )
    engine.synthesize_batch(request, [0, 1])  # warm-up: voice preparation, kernels
    library_loop(engine, request, [0])

    def library(seeds: list[int]) -> list[np.ndarray]:
        return library_loop(engine, request, seeds)

    def one_by_one(seeds: list[int]) -> list[np.ndarray]:
        return [engine.synthesize(request, seed) for seed in seeds]

    def together(seeds: list[int]) -> list[np.ndarray]:
        return engine.synthesize_batch(request, seeds)

    configurations = [
        ("library loop, 1 candidate", library, 1),
        ("narrator loop, 1 candidate", one_by_one, 1),
        ("library loop, 3 one by one", library, 3),
        ("narrator loop, 3 one by one", one_by_one, 3),
        ("narrator loop, 3 batched", together, 3),
        ("narrator loop, 10 batched", together, 10),
    ]
    rows = [
        measure(name, make, engine, args.device, args.repeats, n)
        for name, make, n in configurations
    ]

    device_name = (
        torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor()
    )
    print(
        f"Chatterbox (random init) on {device_name}, torch {torch.__version__}, "
        f"dtype {args.dtype}, {args.tokens} tokens per candidate, "
        f"model load {load_seconds:.1f} s, median of {args.repeats}"
    )
    print(
        f"{'configuration':<30} {'T3 tok/s':>9} {'T3 s':>7} {'S3Gen s':>8} {'audio s':>8}"
        f" {'wall s':>7} {'RTF':>6}"
    )
    for row in rows:
        print(
            f"{row['configuration']:<30} {row['t3_tokens_per_s']:>9.1f} {row['t3_s']:>7.2f}"
            f" {row['s3gen_s']:>8.2f} {row['audio_s']:>8.2f} {row['wall_s']:>7.2f}"
            f" {row['rtf']:>6.2f}"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"device": device_name, "tokens": args.tokens, "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
