"""The Chatterbox engine through the real chatterbox-tts classes and the generated random-weight
checkpoint (loaded by the package's from_local). Random weights: assertions are on lengths,
joins, cancellation and isolation between requests, never on how it sounds."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from services.tts.engines.base import CancelToken, SynthesisParams
from services.tts.engines.chunk_decoder import TOKEN_SAMPLES
from tests.helpers.speech import speak
from tests.tts.conftest import make_engine


def collect(engine, text, conds, params, cancel=None):
    tokens: list[int] = []
    chunks = list(engine.stream_with_tokens(text, conds, params, cancel or CancelToken(), tokens))
    return chunks, tokens


def test_streaming_yields_several_chunks_with_exact_length_and_smooth_joins(chatterbox_engine):
    engine = make_engine(
        chatterbox_engine.settings.model_dir,
        chatterbox_engine.model,
        max_new_tokens=18,
        first_chunk_tokens=5,
        chunk_tokens=5,
    )
    conds = engine.builtin_conditionals("default")
    chunks, tokens = collect(engine, "Hello there, streaming test.", conds, SynthesisParams(seed=11))
    assert len(tokens) >= 11  # random weights rarely stop early; ~1/5 of sampled ids are not speech tokens
    assert len(chunks) >= 3, [len(c) for c in chunks]
    audio = np.concatenate(chunks)
    # exactly 960 samples per valid speech token: what a one-shot S3Gen decode of the same tokens gives
    assert len(audio) == len(tokens) * TOKEN_SAMPLES
    one_shot = engine._decode(conds.gen, 1, tokens, True)
    assert len(one_shot) == len(audio)
    assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) > 0
    # no click at the joins: the sample step across a join is no larger than the steps inside chunks
    joins = np.cumsum([len(c) for c in chunks])[:-1]
    join_jumps = np.abs(audio[joins] - audio[joins - 1])
    inside = np.abs(np.diff(np.concatenate([np.diff(c) for c in chunks])))
    inside_max = max(np.max(np.abs(np.diff(c))) for c in chunks)
    assert np.max(join_jumps) <= inside_max, (join_jumps, inside_max, inside.max())


def test_cancel_stops_within_one_chunk(chatterbox_engine):
    engine = make_engine(chatterbox_engine.settings.model_dir, chatterbox_engine.model, max_new_tokens=200)
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
    assert len(tokens) < 6 + 8 + 1  # stopped at the next token check, far from the 200-token cap
    assert cancel.cancelled


def test_concurrent_requests_with_different_voices_do_not_mix(chatterbox_engine):
    engine = make_engine(
        chatterbox_engine.settings.model_dir,
        chatterbox_engine.model,
        max_new_tokens=12,
        first_chunk_tokens=5,
        chunk_tokens=5,
    )
    voice_a = engine.builtin_conditionals("default")
    voice_b = engine.compute_conditionals(speak("This is another voice for cloning.", rate=24000), 24000)
    params = SynthesisParams(seed=7, cfg_weight=0.0)

    def run(conds):
        return np.concatenate(list(engine.stream("Two voices.", conds, params, CancelToken())))

    alone_a, alone_b = run(voice_a), run(voice_b)
    assert len(alone_a) and len(alone_b)
    assert len(alone_a) != len(alone_b) or not np.allclose(alone_a, alone_b)  # the voices differ

    results: dict[str, np.ndarray] = {}
    barrier = threading.Barrier(2)

    def worker(name, conds):
        barrier.wait()
        results[name] = run(conds)

    threads = [threading.Thread(target=worker, args=(n, c)) for n, c in (("a", voice_a), ("b", voice_b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    np.testing.assert_allclose(results["a"], alone_a, atol=1e-5)
    np.testing.assert_allclose(results["b"], alone_b, atol=1e-5)
    # and the shared model was never given a voice: it still holds only the checkpoint's conds.pt
    assert engine.model.conds is voice_a


@pytest.mark.parametrize("backend_kind", ["redis", "directory"])
async def test_voice_conditionals_round_trip_through_the_store(chatterbox_engine, redis_server, tmp_path, backend_kind):
    import torch

    from services.common.audio import wav_bytes
    from services.tts.voices.backends import DirectoryBackend, RedisBackend
    from services.tts.voices.store import VoiceStore

    def backend():
        return RedisBackend(redis_server.url) if backend_kind == "redis" else DirectoryBackend(tmp_path)

    clip = wav_bytes(speak("Reference clip for a stored voice.", rate=24000), 24000)
    writer = VoiceStore(chatterbox_engine, backend(), 4, 1.0, 20.0)
    meta = await writer.register(f"cb-{backend_kind}", "stored", clip)
    original = writer.cache.get(meta.id)
    reader = VoiceStore(chatterbox_engine, backend(), 4, 1.0, 20.0)  # another process's view: empty cache
    loaded = await reader.resolve(meta.id)
    assert loaded is not original
    assert torch.equal(loaded.t3.speaker_emb, original.t3.speaker_emb)
    assert torch.equal(loaded.t3.cond_prompt_speech_tokens, original.t3.cond_prompt_speech_tokens)
    for key, value in original.gen.items():
        if torch.is_tensor(value):
            assert torch.equal(loaded.gen[key], value), key
    await writer.backend.close()
    await reader.backend.close()
