"""The Turbo and Multilingual Chatterbox variants through the engine, each loaded by the package's
own `from_local` (ChatterboxTurboTTS / ChatterboxMultilingualTTS) from its generated random-weight
checkpoint (tools/models/chatterbox_turbo_tiny.py, chatterbox_mtl_tiny.py). One variant is loaded
at a time (module-scoped, parametrized) and freed before the next, next to the session's original
model. Few tokens; assertions on lengths, cancellation and structure, never on sound."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from services.tts.engines.base import CancelToken, EngineError, SynthesisParams
from services.tts.engines.chunk_decoder import TOKEN_SAMPLES
from tests.helpers.speech import speak
from tests.tts.conftest import make_engine

STEPS = {"turbo": "chatterbox_turbo_tiny", "multilingual": "chatterbox_mtl_tiny"}
# first decode after 5 valid tokens, the final one at the end: ≥ 2 chunks from ~10 sampled tokens
# (about 1 in 5 sampled ids of the multilingual model is not a speech token and is dropped)
FEW = dict(first_chunk_tokens=5, chunk_tokens=5, context_tokens=2, max_new_tokens=11)


@pytest.fixture(scope="module", params=["turbo", "multilingual"])
def variant(request, models_dir):
    """(variant name, checkpoint dir, loaded model); the model is dropped when the next variant
    (or the next module) starts, so at most one variant is in memory beside the original."""
    import importlib

    from services.tts.config import ChatterboxSettings
    from services.tts.engines.chatterbox import load_model

    name = request.param
    model_dir = importlib.import_module(f"tools.models.{STEPS[name]}").ensure(models_dir)
    model = load_model(ChatterboxSettings(model_dir=str(model_dir), variant=name), "cpu")
    yield name, model_dir, model
    del model
    gc.collect()


def engine_for(variant, **overrides):
    name, model_dir, model = variant
    return make_engine(model_dir, model, variant=name, **{**FEW, **overrides})


def test_loaded_through_the_variants_own_class(variant):
    from chatterbox.mtl_tts import ChatterboxMultilingualTTS
    from chatterbox.tts_turbo import ChatterboxTurboTTS

    name, _, model = variant
    expected = ChatterboxTurboTTS if name == "turbo" else ChatterboxMultilingualTTS
    assert type(model) is expected
    assert model.conds is not None  # the checkpoint's conds.pt: the built-in voice
    engine = engine_for(variant)
    assert [v.id for v in engine.builtin_voices()] == ["default"]


def test_cloned_voice_streams_in_chunks_of_exact_length(variant):
    engine = engine_for(variant)
    builtin = engine.builtin_conditionals("default")
    reference = speak("This reference clip gives the variant a voice to clone for the stream.", rate=24000)
    conds = engine.compute_conditionals(reference, 24000)
    assert conds is not builtin

    tokens: list[int] = []
    chunks = list(
        engine.stream_with_tokens("Hello there, variant test.", conds, SynthesisParams(seed=5), CancelToken(), tokens)
    )
    assert len(chunks) >= 2, [len(c) for c in chunks]
    audio = np.concatenate(chunks)
    assert len(audio) == len(tokens) * TOKEN_SAMPLES  # 960 samples per emitted speech token, nothing lost
    assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) > 1e-4
    # the voice went with the request: the shared model still holds only its built-in voice
    assert engine.model.conds is builtin

    # and the cloned voice survives the voice store's serialization unchanged
    import torch

    loaded = engine.deserialize(engine.serialize(conds))
    assert torch.equal(loaded.t3.speaker_emb, conds.t3.speaker_emb)
    assert torch.equal(loaded.t3.cond_prompt_speech_tokens, conds.t3.cond_prompt_speech_tokens)
    for key, value in conds.gen.items():
        if torch.is_tensor(value):
            assert torch.equal(loaded.gen[key], value), key


def test_cancel_stops_within_one_chunk(variant):
    engine = engine_for(variant, max_new_tokens=200)
    conds = engine.builtin_conditionals("default")
    cancel = CancelToken()
    tokens: list[int] = []
    after_cancel = 0
    for i, _chunk in enumerate(
        engine.stream_with_tokens("A long text to cancel.", conds, SynthesisParams(seed=3), cancel, tokens)
    ):
        if i == 0:
            cancel.cancel()
        else:
            after_cancel += 1
    assert after_cancel <= 1
    assert len(tokens) <= FEW["first_chunk_tokens"] + FEW["chunk_tokens"]  # far from the 200-token cap
    assert cancel.cancelled


def test_turbo_ignores_cfg_weight_and_exaggeration(variant):
    name, _, _ = variant
    if name != "turbo":
        pytest.skip("only Turbo has no CFG and no emotion input")
    engine = engine_for(variant, max_new_tokens=6)
    conds = engine.builtin_conditionals("default")

    def run(**params):
        tokens: list[int] = []
        chunks = engine.stream_with_tokens(
            "Same either way.", conds, SynthesisParams(seed=9, **params), CancelToken(), tokens
        )
        return tokens, np.concatenate(list(chunks))

    tokens_a, audio_a = run(cfg_weight=0.5, exaggeration=0.5)
    tokens_b, audio_b = run(cfg_weight=0.0, exaggeration=2.0)
    assert tokens_a and tokens_a == tokens_b
    np.testing.assert_array_equal(audio_a, audio_b)


def test_multilingual_frames_text_with_the_language_token(variant):
    name, _, model = variant
    if name != "multilingual":
        pytest.skip("language ids are a multilingual-model input")
    engine = engine_for(variant, language="FR")
    tokens = engine.text_tokens("Bonjour.")
    hp = model.t3.hp
    assert tokens[0, 0] == hp.start_text_token and tokens[0, -1] == hp.stop_text_token
    assert tokens[0, 1] == model.tokenizer.tokenizer.token_to_id("[fr]")


def test_multilingual_rejects_an_unknown_language_before_loading(models_dir):
    from services.tts.config import ChatterboxSettings
    from services.tts.engines.chatterbox import ChatterboxEngine

    settings = ChatterboxSettings(model_dir=str(models_dir / "nowhere"), variant="multilingual", language="xx")
    with pytest.raises(EngineError) as err:
        ChatterboxEngine(settings)  # no model given: it would load one if the language passed
    assert err.value.code == "bad_language"
