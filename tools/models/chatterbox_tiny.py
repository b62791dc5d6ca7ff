"""Generate a random-weight Chatterbox checkpoint in the layout `ChatterboxTTS.from_local` reads.

Files: ve.safetensors, t3_cfg.safetensors, s3gen.safetensors, tokenizer.json, conds.pt.

The modules are the real chatterbox-tts 0.1.7 classes (VoiceEncoder, T3, S3Gen) built with their
default configurations and seeded random weights, so the service loads it through the package's
own `from_local` and every real inference path runs. `from_local` always builds `T3()` with the
default Llama-520M configuration, so a smaller T3 cannot go through the real loader: the
architecture (and size, ~2 GB of float32 weights) is the real one and tests keep token counts
small instead. Its audio is meaningless by design; tests assert on structure, never on sound.

`conds.pt` (the built-in default voice) is computed the package's way (`prepare_conditionals`)
from a synthetic 6 s harmonic clip, so no download or espeak run is needed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from .chatterbox_common import builtin_conditionals, ensure_dir

DIRNAME = "chatterbox-tiny-random"
SEED = 4321
FILES = ("ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors", "tokenizer.json", "conds.pt")
TEXT_VOCAB = 704  # T3Config.english_only().text_tokens_dict_size
CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'\"-:;()&%$/ "


def write_tokenizer(path: Path) -> None:
    """A character-level tokenizer the package's EnTokenizer accepts: [STOP]=0 and [START]=255
    (T3Config's stop/start text tokens), [SPACE] as an added token (EnTokenizer replaces spaces
    with it), [UNK] for anything else; ids stay below the 704-entry text embedding."""
    from tokenizers import AddedToken, Tokenizer
    from tokenizers.models import BPE

    vocab = {"[STOP]": 0, "[UNK]": 1, "[SPACE]": 2}
    for ch in CHARS.replace(" ", ""):
        vocab[ch] = len(vocab)
    while len(vocab) < 255:  # fillers keep the ids contiguous (tokenizers warns about holes)
        vocab[f"[UNUSED{len(vocab)}]"] = len(vocab)
    vocab["[START]"] = 255
    extra = ["[PAD]", "[SEP]", "[CLS]", "[MASK]"]
    for i, tok in enumerate(extra):
        vocab[tok] = 256 + i
    assert max(vocab.values()) < TEXT_VOCAB
    tokenizer = Tokenizer(BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t in ("[STOP]", "[START]", "[UNK]", *extra)])
    tokenizer.add_tokens([AddedToken("[SPACE]", special=False, normalized=False)])
    tokenizer.save(str(path))


def build(out_dir: Path) -> None:
    import torch
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.t3 import T3
    from chatterbox.models.tokenizers import EnTokenizer
    from chatterbox.models.voice_encoder import VoiceEncoder
    from chatterbox.tts import ChatterboxTTS
    from safetensors.torch import save_file

    torch.manual_seed(SEED)
    ve = VoiceEncoder().eval()
    t3 = T3().eval()
    s3gen = S3Gen().eval()
    save_file({k: v.contiguous() for k, v in ve.state_dict().items()}, str(out_dir / "ve.safetensors"))
    save_file({k: v.contiguous() for k, v in t3.state_dict().items()}, str(out_dir / "t3_cfg.safetensors"))
    # the package loads s3gen with strict=False; shared tensors (weight norm) are cloned apart
    s3_state = {k: v.detach().clone().contiguous() for k, v in s3gen.state_dict().items()}
    save_file(s3_state, str(out_dir / "s3gen.safetensors"))
    write_tokenizer(out_dir / "tokenizer.json")

    tts = ChatterboxTTS(t3, s3gen, ve, EnTokenizer(str(out_dir / "tokenizer.json")), "cpu")
    builtin_conditionals(tts, out_dir)
    (out_dir / "README.json").write_text(
        json.dumps({"what": "random weights, real chatterbox-tts 0.1.7 architecture", "seed": SEED}, indent=1)
    )


def ensure(models_dir: Path) -> Path:
    """Idempotent: builds models/chatterbox-tiny-random/ once; a half-written one is rebuilt."""
    return ensure_dir(models_dir, DIRNAME, FILES, build)


if __name__ == "__main__":
    from services.common.config import MODELS_DIR

    print(ensure(MODELS_DIR))
