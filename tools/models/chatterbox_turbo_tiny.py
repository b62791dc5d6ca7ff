"""Generate a random-weight Chatterbox Turbo checkpoint in the layout `ChatterboxTurboTTS.from_local`
reads (chatterbox-tts 0.1.7).

Files: ve.safetensors, t3_turbo_v1.safetensors, s3gen_meanflow.safetensors, tokenizer.json +
tokenizer_config.json (read by `AutoTokenizer.from_pretrained`), conds.pt.

The loader fixes the architecture: T3 on a GPT-2 medium backbone (50276 text ids, 6563 speech
ids, 375 prompt tokens, no perceiver, no emotion input) and the meanflow S3Gen, both loaded with
strict=True, so the real shapes are kept; the float parameters are stored as float16 (half the
size; the loader copies them into its float32 modules). The tokenizer is a byte-level BPE with
no merges — one token per byte, every id below 50276 — padded with unused entries to the 50276
ids the loader expects, so the loader's length check passes. Audio is meaningless by design.
"""

from __future__ import annotations

import json
from pathlib import Path

from tools.models.chatterbox_common import builtin_conditionals, ensure_dir, save_safetensors

DIRNAME = "chatterbox-turbo-tiny-random"
SEED = 4322
TEXT_VOCAB = 50276  # the loader's T3Config(text_tokens_dict_size=50276) and its tokenizer length check
EOS = "<|endoftext|>"
FILES = (
    "ve.safetensors",
    "t3_turbo_v1.safetensors",
    "s3gen_meanflow.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "conds.pt",
)


def write_tokenizer(out_dir: Path) -> None:
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    while len(vocab) < TEXT_VOCAB - 1:
        vocab[f"<|unused{len(vocab)}|>"] = len(vocab)
    vocab[EOS] = TEXT_VOCAB - 1
    tokenizer = Tokenizer(BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(EOS, special=True)])
    tokenizer.save(str(out_dir / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": EOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "model_max_length": 1024,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=1))


def build(out_dir: Path) -> None:
    import torch
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.t3 import T3
    from chatterbox.models.t3.modules.t3_config import T3Config
    from chatterbox.models.voice_encoder import VoiceEncoder
    from chatterbox.tts_turbo import ChatterboxTurboTTS
    from transformers import AutoTokenizer

    torch.manual_seed(SEED)
    hp = T3Config(text_tokens_dict_size=TEXT_VOCAB)  # exactly as ChatterboxTurboTTS.from_local sets it
    hp.llama_config_name = "GPT2_medium"
    hp.speech_tokens_dict_size = 6563
    hp.input_pos_emb = None
    hp.speech_cond_prompt_len = 375
    hp.use_perceiver_resampler = False
    hp.emotion_adv = False
    ve = VoiceEncoder().eval()
    t3 = T3(hp).eval()
    s3gen = S3Gen(meanflow=True).eval()
    save_safetensors(ve, out_dir / "ve.safetensors")
    save_safetensors(t3, out_dir / "t3_turbo_v1.safetensors")
    save_safetensors(s3gen, out_dir / "s3gen_meanflow.safetensors")
    write_tokenizer(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    builtin_conditionals(ChatterboxTurboTTS(t3, s3gen, ve, tokenizer, "cpu"), out_dir)
    (out_dir / "README.json").write_text(
        json.dumps({"what": "random weights, real chatterbox-tts 0.1.7 Turbo architecture", "seed": SEED}, indent=1)
    )


def ensure(models_dir: Path) -> Path:
    """Idempotent: builds models/chatterbox-turbo-tiny-random/ once; a half-written one is rebuilt."""
    return ensure_dir(models_dir, DIRNAME, FILES, build)


if __name__ == "__main__":
    from services.common.config import MODELS_DIR

    print(ensure(MODELS_DIR))
