"""Engine audio (float32 at the engine's rate) → the client's encoding and sample rate, chunk by
chunk. The resampler keeps its filter state across chunks (no clicks at joins); `flush()` at the
end returns the filter's tail, so nothing is lost."""

from __future__ import annotations

import numpy as np

from services.common.audio import StreamResampler, encode


class AudioOutput:
    def __init__(self, engine_rate: int, sample_rate: int, encoding: str) -> None:
        self.sample_rate = sample_rate
        self.encoding = encoding
        self._resampler = StreamResampler(engine_rate, sample_rate)
        self.samples_out = 0

    def convert(self, audio: np.ndarray) -> tuple[bytes, int]:
        out = self._resampler.process(audio)
        self.samples_out += len(out)
        return encode(out, self.encoding), len(out)

    def flush(self) -> tuple[bytes, int]:
        out = self._resampler.flush()
        self.samples_out += len(out)
        return encode(out, self.encoding), len(out)
