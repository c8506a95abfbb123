"""Where the worker's model files live, and the one command that puts them there.

    python -m gpu_worker.weights --to /workspace/models                  # English + small.en
    python -m gpu_worker.weights --to /workspace/models --multilingual   # 23 languages + small

The layout, what NARRATOR_CHATTERBOX_DIR and NARRATOR_WHISPER_MODEL point at:

    <models>/chatterbox/               English Chatterbox (ENGLISH_FILES)
    <models>/chatterbox-multilingual/  multilingual Chatterbox, its Cangjie table and
                                       pkuseg/ (Chinese word segmentation) (MULTILINGUAL_FILES)
    <models>/whisper-<name>/           a faster-whisper (CTranslate2) model

A RunPod Pod mounts a network volume at /workspace; serverless workers mount the same volume
at /runpod-volume. Files written to /workspace/models on a Pod are read from
/runpod-volume/models by the workers (the image's defaults). Everything a worker loads is
here: with HF_HUB_OFFLINE=1 (the image's default) a cold start makes no network call.
"""

import argparse
from pathlib import Path

REPO = "ResembleAI/chatterbox"
ENGLISH_FILES = ("ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors", "tokenizer.json")
MULTILINGUAL_FILES = (
    "ve.pt",
    "t3_mtl23ls_v2.safetensors",
    "s3gen.pt",
    "grapheme_mtl_merged_expanded_v1.json",
    "Cangjie5_TC.json",
)
BUILTIN_VOICE = "conds.pt"  # the default voice: optional, but every request then needs a clip
PKUSEG_DIR = "pkuseg"  # pkuseg's home inside the multilingual directory
PKUSEG_MODEL = "spacy_ontonotes"  # the model chatterbox's tokenizer asks pkuseg for


def chatterbox_dir(models: Path, multilingual: bool) -> Path:
    return models / ("chatterbox-multilingual" if multilingual else "chatterbox")


def whisper_dir(models: Path, name: str) -> Path:
    return models / f"whisper-{name}"


def missing_files(directory: Path, multilingual: bool) -> list[str]:
    """The files a Chatterbox model directory lacks (relative names; [] when complete)."""
    names = list(MULTILINGUAL_FILES if multilingual else ENGLISH_FILES)
    if multilingual:  # pkuseg skips its download only when both are there
        names += [f"{PKUSEG_DIR}/{PKUSEG_MODEL}.zip", f"{PKUSEG_DIR}/{PKUSEG_MODEL}"]
    return [name for name in names if not (directory / name).exists()]


def download(models: Path, multilingual: bool, whisper: str) -> dict[str, Path]:
    """Fetch one Chatterbox model and one Whisper model into the layout above; returns the
    directories to point the worker's settings at. Needs the network (the hub, and GitHub
    for pkuseg's model); run it once, on a Pod with the volume or while building an image."""
    from faster_whisper import download_model
    from huggingface_hub import snapshot_download

    target = chatterbox_dir(models, multilingual)
    files = MULTILINGUAL_FILES if multilingual else ENGLISH_FILES
    snapshot_download(REPO, local_dir=target, allow_patterns=[*files, BUILTIN_VOICE])
    if multilingual:
        from spacy_pkuseg import config
        from spacy_pkuseg.download import download_model as pkuseg_download

        pkuseg_download(
            config.model_urls[PKUSEG_MODEL],
            str(target / PKUSEG_DIR),
            config.model_hash[PKUSEG_MODEL],
        )
    absent = missing_files(target, multilingual)
    if absent:
        raise SystemExit(f"download incomplete: {target} lacks {', '.join(absent)}")
    hearing = whisper_dir(models, whisper)
    download_model(whisper, output_dir=str(hearing))
    return {"chatterbox": target, "whisper": hearing}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m gpu_worker.weights",
        description="Download the worker's models into the layout it reads (see the module "
        "docstring). On a RunPod Pod, write to /workspace/models: serverless workers read "
        "the same volume at /runpod-volume/models.",
    )
    parser.add_argument("--to", type=Path, required=True, help="the models folder")
    parser.add_argument(
        "--multilingual",
        action="store_true",
        help="the 23-language model instead of the English one (Whisper default: small)",
    )
    parser.add_argument(
        "--whisper",
        default=None,
        help="faster-whisper model name (default: small.en, or small with --multilingual: "
        "an English-only Whisper cannot hear other languages)",
    )
    args = parser.parse_args(argv)
    whisper = args.whisper or ("small" if args.multilingual else "small.en")
    try:
        where = download(args.to, args.multilingual, whisper)
    except Exception as e:  # the hub's, the network's or the disk's: one line, not a traceback
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        reason = " ".join(lines[:2]) or type(e).__name__  # the hub's: status, then what
        raise SystemExit(f"download failed: {reason}") from None
    print(f"done: {where['chatterbox']} and {where['whisper']}")


if __name__ == "__main__":
    main()
