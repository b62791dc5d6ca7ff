"""Generate a tiny random-weight Whisper in CTranslate2 format, with a valid tokenizer.json.

The architecture and vocabulary match multilingual Whisper (80 mels, vocab 51865, the special
tokens in their usual ids), so faster-whisper's real loading, decoding, language detection and
word-timestamp code runs on it. Its output text is meaningless by design: tests never look at
words. Needs torch + transformers (the dev/tts extras), never the ASR service itself.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

DIRNAME = "whisper-tiny-random"
SEED = 1234
LANGUAGES = (
    "en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu ta no th ur hr bg lt la mi "
    "ml cy sk te fa lv bn sr az sl kn et mk br eu is hy ne mn bs kk sq sw gl mr pa si km sn yo so af oc ka be tg sd "
    "gu am yi lo uz fo ht ps tk nn mt sa lb my bo tl mg as tt haw ln ha ba jw su"
).split()
N_TEXT = 50257  # byte-level BPE ids 0..50256, as in GPT-2/Whisper


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable-char map (what ByteLevel pre-tokenizers use)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def special_tokens() -> list[str]:
    tokens = ["<|endoftext|>", "<|startoftranscript|>"]
    tokens += [f"<|{lang}|>" for lang in LANGUAGES]
    tokens += ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]
    tokens += [f"<|{i * 0.02:.2f}|>" for i in range(1501)]
    return tokens


def write_tokenizer(path: Path) -> int:
    """A byte-level BPE tokenizer: 256 byte symbols, short letter pairs and fillers up to id
    50256, then Whisper's specials from 50257 (<|endoftext|>) on. Returns the size (51865)."""
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    b2u = _bytes_to_unicode()
    vocab: dict[str, int] = {}
    for ch in b2u.values():
        vocab[ch] = len(vocab)
    merges: list[tuple[str, str]] = []
    space = b2u[ord(" ")]
    letters = "etaoinshrdlcumwfgypbvk"
    for a in letters:  # word starts ("Ġe") and letter pairs, so decoded text splits into words
        for b in [space, *letters]:
            left, right = (b, a) if b == space else (a, b)
            if left + right not in vocab:
                vocab[left + right] = len(vocab)
                merges.append((left, right))
    filler = 0
    while len(vocab) < N_TEXT:
        vocab[f"{space}w{filler}"] = len(vocab)
        filler += 1
    tok = Tokenizer(BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special_tokens()])
    tok.save(str(path))
    if tok.token_to_id("<|endoftext|>") != 50257 or tok.token_to_id("<|notimestamps|>") != 50363:
        raise RuntimeError("generated Whisper tokenizer has special tokens at the wrong ids")
    return tok.get_vocab_size(with_added_tokens=True)


def ensure(models_dir: Path) -> Path:
    target = models_dir / DIRNAME
    if (target / "model.bin").exists() and (target / "tokenizer.json").exists():
        return target
    import torch
    from ctranslate2.converters import TransformersConverter
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    print("[models] generating tiny random Whisper (CTranslate2)", flush=True)
    torch.manual_seed(SEED)
    with tempfile.TemporaryDirectory() as tmp:
        hf_dir = Path(tmp) / "hf"
        hf_dir.mkdir()
        vocab_size = write_tokenizer(hf_dir / "tokenizer.json")
        config = WhisperConfig(
            vocab_size=vocab_size,
            num_mel_bins=80,
            d_model=64,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=128,
            decoder_ffn_dim=128,
            max_source_positions=1500,
            max_target_positions=448,
            pad_token_id=50257,
            bos_token_id=50257,
            eos_token_id=50257,
            decoder_start_token_id=50258,
            suppress_tokens=[],
            begin_suppress_tokens=[220, 50257],
        )
        model = WhisperForConditionalGeneration(config)
        model.save_pretrained(hf_dir)
        (hf_dir / "preprocessor_config.json").write_text(
            json.dumps({"feature_size": 80, "sampling_rate": 16000, "hop_length": 160, "chunk_length": 30, "n_fft": 400})
        )
        out = Path(tmp) / "ct2"
        TransformersConverter(str(hf_dir), copy_files=["tokenizer.json", "preprocessor_config.json"]).convert(
            str(out), quantization="float32"
        )
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(out, target)
    return target
