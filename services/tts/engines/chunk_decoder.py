"""Speech tokens arriving one by one → audio chunks, decoded while generation goes on.

S3Gen turns 25 Hz speech tokens into 24 kHz audio: 960 samples per token. It is not causal
at the edges: the flow encoder looks 3 tokens ahead, so the audio of the last 3 tokens changes
once more tokens follow (S3Gen's own `finalize=False` mode, which drops them, fails on a mask
shape in chatterbox-tts 0.1.7, so every decode is a full one and this class drops that audio
itself), and the vocoder's last few milliseconds change once more mel follows. So each
decode re-runs S3Gen on the new tokens plus `context` already-emitted tokens on the left, keeps
only audio that is both new and settled, and holds back the last `crossfade` samples, which the
next decode's version of the same samples is cross-faded into (raised cosine, no click, nothing
emitted twice). The final decode (finalize=True) emits everything up to the last token.

Invariant, checked by tests: the chunks concatenate to exactly `tokens × 960` samples — the
length a one-shot `S3Gen.inference` of the same tokens returns.

Schedule: the first decode after `first` tokens (latency), later ones every `chunk` tokens.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

TOKEN_SAMPLES = 960  # S3GEN_SR (24000) / 25 tokens per second
LOOKAHEAD_TOKENS = 3  # CausalMaskedDiffWithXvec.pre_lookahead_len

# decode(tokens, final, call_index) -> float32 audio for exactly those tokens (960 per token),
# starting at the first token; `final` tells the last call of the stream
DecodeFn = Callable[[list[int], bool, int], np.ndarray]


def _fades(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Raised-cosine fade pair with out + in = 1: the two decodes of the same samples are strongly
    correlated (same tokens), so equal-gain keeps the level, and identical inputs pass unchanged."""
    t = (np.arange(n, dtype=np.float64) + 0.5) / max(n, 1)
    fade_in = 0.5 - 0.5 * np.cos(np.pi * t)
    return (1.0 - fade_in).astype(np.float32), fade_in.astype(np.float32)


class ChunkDecoder:
    def __init__(
        self,
        decode: DecodeFn,
        first: int,
        chunk: int,
        context: int,
        crossfade: int,
        edge_guard: int = TOKEN_SAMPLES // 2,
    ) -> None:
        self._decode = decode
        self.first = first
        self.chunk = chunk
        self.context = max(2, context)  # ≥ 2 tokens: the decode's own 40 ms fade-in stays in the context
        self.crossfade = crossfade
        self.edge_guard = edge_guard
        self.tokens: list[int] = []
        self.emitted = 0  # absolute samples handed out
        self._tail = np.zeros(0, dtype=np.float32)  # last decode's audio at [emitted, emitted + len)
        self._decoded_at = 0  # token count at the last decode
        self.decodes = 0

    @property
    def total_samples(self) -> int:
        return len(self.tokens) * TOKEN_SAMPLES

    def push(self, token: int) -> np.ndarray | None:
        """Adds one valid speech token; returns a chunk when the schedule says decode now."""
        self.tokens.append(token)
        due = self.first if self.decodes == 0 else self.chunk
        if len(self.tokens) - self._decoded_at < due:
            return None
        return self._step(final=False)

    def finish(self) -> np.ndarray:
        """Decodes with finalize=True and returns all audio not yet handed out."""
        if not self.tokens:
            return np.zeros(0, dtype=np.float32)
        out = self._step(final=True)
        return out if out is not None else np.zeros(0, dtype=np.float32)

    def _step(self, final: bool) -> np.ndarray | None:
        n = len(self.tokens)
        start = max(0, self.emitted // TOKEN_SAMPLES - self.context)
        if not final and (n - start) <= LOOKAHEAD_TOKENS + 1:
            return None
        audio = np.asarray(self._decode(self.tokens[start:], final, self.decodes), dtype=np.float32)
        self.decodes += 1
        self._decoded_at = n
        base = start * TOKEN_SAMPLES
        end = base + len(audio) if final else base + len(audio) - LOOKAHEAD_TOKENS * TOKEN_SAMPLES - self.edge_guard
        if final:
            end = min(end, n * TOKEN_SAMPLES)
        seg = audio[self.emitted - base : max(self.emitted, end) - base].copy()
        if len(self._tail):
            k = min(len(self._tail), len(seg))
            fade_out, fade_in = _fades(len(self._tail))
            seg[:k] = self._tail[:k] * fade_out[:k] + seg[:k] * fade_in[:k]
        if final:
            if len(seg) < n * TOKEN_SAMPLES - self.emitted:  # a decoder shorter than promised: pad, never drop
                seg = np.concatenate([seg, np.zeros(n * TOKEN_SAMPLES - self.emitted - len(seg), np.float32)])
            self.emitted += len(seg)
            self._tail = np.zeros(0, dtype=np.float32)
            return seg
        hold = min(self.crossfade, len(seg))
        if len(seg) - hold <= 0:
            return None  # nothing settled yet beyond the cross-fade: wait for more tokens
        out, self._tail = seg[: len(seg) - hold], seg[len(seg) - hold :].copy()
        self.emitted += len(out)
        return out
