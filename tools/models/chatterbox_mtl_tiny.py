"""Generate a random-weight Chatterbox Multilingual checkpoint in the layout
`ChatterboxMultilingualTTS.from_local` reads (chatterbox-tts 0.1.7).

Files: ve.pt, t3_mtl23ls_v2.safetensors, s3gen.pt, grapheme_mtl_merged_expanded_v1.json, conds.pt,
plus what the loader's tokenizer fetches on its own when it is built (MTLTokenizer →
ChineseCangjieConverter): the Cangjie table, which it asks `hf_hub_download(cache_dir=<ckpt dir>)`
for, stored here in that hub-cache layout; and the pkuseg Chinese segmenter "spacy_ontonotes",
which spacy_pkuseg downloads from GitHub into $PKUSEG_HOME and whose absence offline is a hard
error (ConnectionError out of `from_local`), stored here under pkuseg/ as a tiny valid random
segmenter. The engine points both at the checkpoint directory when it finds them there
(services/tts/engines/chatterbox.py, `_checkpoint_assets`).

The loader fixes the architecture: T3 = Llama-520M with a 2454-entry text embedding, S3Gen = the
original one, all loaded strictly; float parameters are stored as float16 (half the size; the
loader copies them into its float32 modules). The grapheme tokenizer is character level with the
package's special tokens and one `[xx]` token per supported language. Audio is meaningless.
"""

from __future__ import annotations

import json
from pathlib import Path

from tools.models.chatterbox_common import builtin_conditionals, ensure_dir, save_safetensors, save_torch

DIRNAME = "chatterbox-mtl-tiny-random"
SEED = 4323
TEXT_VOCAB = 2454  # T3Config.multilingual().text_tokens_dict_size
TOKENIZER = "grapheme_mtl_merged_expanded_v1.json"
CANGJIE_REPO = "models--ResembleAI--chatterbox"  # hf_hub_download's cache folder for ResembleAI/chatterbox
CANGJIE_REVISION = "0" * 40
FILES = (
    "ve.pt",
    "t3_mtl23ls_v2.safetensors",
    "s3gen.pt",
    TOKENIZER,
    "conds.pt",
    f"{CANGJIE_REPO}/snapshots/{CANGJIE_REVISION}/Cangjie5_TC.json",
    "pkuseg/spacy_ontonotes/weights.npz",
)
# letters after the package's lower-casing and NFKD (accents become combining marks)
CHARS = "abcdefghijklmnopqrstuvwxyz0123456789.,!?'\"-:;()&%$/¿¡" + "".join(chr(c) for c in range(0x300, 0x370))


def write_tokenizer(path: Path) -> None:
    """[STOP]=0 and [START]=255 like the original's ids (MTLTokenizer only checks they exist; the
    text start/stop ids the model uses come from T3Config), [SPACE] for spaces, [UNK] for the rest."""
    from chatterbox.mtl_tts import SUPPORTED_LANGUAGES
    from tokenizers import AddedToken, Tokenizer
    from tokenizers.models import BPE

    vocab = {"[STOP]": 0, "[UNK]": 1, "[SPACE]": 2}
    for ch in CHARS:
        vocab[ch] = len(vocab)
    while len(vocab) < 255:
        vocab[f"[UNUSED{len(vocab)}]"] = len(vocab)
    vocab["[START]"] = 255
    extra = ["[PAD]", "[SEP]", "[CLS]", "[MASK]"]
    for tok in extra:
        vocab[tok] = len(vocab)
    languages = [f"[{code}]" for code in sorted(SUPPORTED_LANGUAGES)]
    for tok in languages:
        vocab[tok] = len(vocab)
    assert max(vocab.values()) < TEXT_VOCAB
    tokenizer = Tokenizer(BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t in ("[STOP]", "[START]", "[UNK]", *extra)])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in ("[SPACE]", *languages)])
    tokenizer.save(str(path))


def write_cangjie(out_dir: Path) -> None:
    """A few entries of the Cangjie table ("glyph<TAB>code" lines) in the hub-cache layout."""
    repo = out_dir / CANGJIE_REPO
    snapshot = repo / "snapshots" / CANGJIE_REVISION
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(CANGJIE_REVISION)
    entries = ["你\tonf", "好\tvnd", "中\tl", "文\tyk"]
    (snapshot / "Cangjie5_TC.json").write_text(json.dumps(entries, ensure_ascii=False))


def write_pkuseg(out_dir: Path, rng) -> None:
    """spacy_pkuseg's model format: features.msgpack (feature and tag indexes) + weights.npz
    (n_tag × (n_feature + n_tag) CRF weights). The .zip is the marker its downloader checks."""
    import numpy as np
    import srsly

    home = out_dir / "pkuseg"
    model = home / "spacy_ontonotes"
    model.mkdir(parents=True)
    (home / "spacy_ontonotes.zip").write_bytes(b"")
    tags = {"B": 0, "B_single": 1, "I": 2, "I_end": 3, "I_first": 4}
    unigram = ["你好", "中文"]
    features = {"/": 0, "c.你": 1, "c.好": 2, "c.中": 3, "c.文": 4}
    srsly.write_msgpack(
        model / "features.msgpack",
        {"unigram": unigram, "bigram": [], "feature_to_idx": features, "tag_to_idx": tags},
    )
    n_tag, n_feature = len(tags), len(features)
    w = rng.standard_normal(n_tag * (n_feature + n_tag)).astype(np.float32)
    np.savez(model / "weights.npz", sizes=np.array([n_tag, n_feature]), w=w)


def build(out_dir: Path) -> None:
    import numpy as np
    import torch
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.t3 import T3
    from chatterbox.models.t3.modules.t3_config import T3Config
    from chatterbox.models.tokenizers import MTLTokenizer
    from chatterbox.models.voice_encoder import VoiceEncoder
    from chatterbox.mtl_tts import ChatterboxMultilingualTTS

    torch.manual_seed(SEED)
    ve = VoiceEncoder().eval()
    t3 = T3(T3Config.multilingual()).eval()
    s3gen = S3Gen().eval()
    save_torch(ve, out_dir / "ve.pt")
    save_safetensors(t3, out_dir / "t3_mtl23ls_v2.safetensors")
    save_torch(s3gen, out_dir / "s3gen.pt")
    write_tokenizer(out_dir / TOKENIZER)
    write_cangjie(out_dir)
    write_pkuseg(out_dir, np.random.default_rng(SEED))
    from services.tts.engines.chatterbox import checkpoint_assets

    with checkpoint_assets(out_dir):
        tokenizer = MTLTokenizer(str(out_dir / TOKENIZER))
    builtin_conditionals(ChatterboxMultilingualTTS(t3, s3gen, ve, tokenizer, "cpu"), out_dir)
    (out_dir / "README.json").write_text(
        json.dumps({"what": "random weights, real chatterbox-tts 0.1.7 multilingual architecture", "seed": SEED})
    )


def ensure(models_dir: Path) -> Path:
    """Idempotent: builds models/chatterbox-mtl-tiny-random/ once; a half-written one is rebuilt."""
    return ensure_dir(models_dir, DIRNAME, FILES, build)


if __name__ == "__main__":
    from services.common.config import MODELS_DIR

    print(ensure(MODELS_DIR))
