"""ChunkDecoder's bookkeeping against a decoder whose audio is known exactly: every token renders
a fixed signal at its absolute position, so the streamed chunks must rebuild the one-shot signal
sample for sample (no drop, no repeat, no shift), with the edge of each partial decode (made
wrong on purpose) never reaching the output."""

import numpy as np
import pytest

from services.tts.engines.chunk_decoder import LOOKAHEAD_TOKENS, TOKEN_SAMPLES, ChunkDecoder


def truth(n_tokens: int) -> np.ndarray:
    idx = np.arange(n_tokens * TOKEN_SAMPLES)
    return (0.5 * np.sin(idx * 0.013) + 0.2 * np.sin(idx * 0.0021)).astype(np.float32)


def decode(tokens: list[int], final: bool, call: int) -> np.ndarray:
    start, n = tokens[0], tokens[-1] + 1  # tokens are their own absolute positions
    audio = truth(n)[start * TOKEN_SAMPLES :].copy()
    if not final:  # unsettled right edge (look-ahead tokens): garbage that must never be emitted
        audio[-LOOKAHEAD_TOKENS * TOKEN_SAMPLES :] = 0.9
    return audio


@pytest.mark.parametrize("n_tokens", [1, 5, 17, 60, 123])
def test_chunks_rebuild_the_one_shot_signal_exactly(n_tokens):
    dec = ChunkDecoder(decode, first=6, chunk=10, context=4, crossfade=240)
    chunks = [c for t in range(n_tokens) if (c := dec.push(t)) is not None]
    chunks.append(dec.finish())
    out = np.concatenate(chunks)
    assert len(out) == n_tokens * TOKEN_SAMPLES
    np.testing.assert_allclose(out, truth(n_tokens), atol=1e-6)
    if n_tokens >= 60:
        assert len(chunks) >= 5  # it really streamed


def test_first_chunk_comes_after_first_tokens():
    dec = ChunkDecoder(decode, first=6, chunk=50, context=4, crossfade=240)
    got = [dec.push(t) for t in range(6)]
    assert all(c is None for c in got[:5]) and got[5] is not None and len(got[5]) > 0
