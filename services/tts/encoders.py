"""Response formats of POST /v1/audio/speech, each produced incrementally so the HTTP body
streams while synthesis goes on: wav (streaming header + 16-bit PCM), pcm (raw s16le, as
OpenAI's), and mp3 / opus (Ogg) / flac / aac (ADTS) through PyAV encoders writing into a drained buffer."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from services.common.audio import float_to_int16, wav_header

FORMATS = {
    "wav": "audio/wav",
    "pcm": "audio/pcm",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "flac": "audio/flac",
    "aac": "audio/aac",
}
# (container format, codec, sample format) per PyAV-encoded response format
_AV = {
    "mp3": ("mp3", "libmp3lame", "s16p"),
    "opus": ("ogg", "libopus", "s16"),
    "flac": ("flac", "flac", "s16"),
    "aac": ("adts", "aac", "fltp"),
}
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


class _Sink:
    """A write-only, non-seekable file for PyAV: what the muxer writes is collected until drained."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


class StreamEncoder:
    def __init__(self, fmt: str, sample_rate: int) -> None:
        if fmt not in FORMATS:
            raise ValueError(fmt)
        self.fmt = fmt
        self.sample_rate = sample_rate
        self.media_type = FORMATS[fmt]
        self._started = False
        if fmt in _AV:
            import av

            container, codec, layout_fmt = _AV[fmt]
            self._sink = _Sink()
            self._container = av.open(self._sink, mode="w", format=container)
            self._stream = self._container.add_stream(codec, rate=sample_rate)
            self._stream.layout = "mono"
            self._format = layout_fmt
            self._pts = 0

    def header(self) -> bytes:
        return wav_header(self.sample_rate) if self.fmt == "wav" else b""

    def encode(self, audio: np.ndarray) -> bytes:
        if len(audio) == 0:  # the resampler's first call can return nothing; encoders reject empty frames
            return b""
        pcm = float_to_int16(audio)
        if self.fmt in ("wav", "pcm"):
            return pcm.astype("<i2").tobytes()
        import av

        samples = np.clip(audio, -1.0, 1.0).astype(np.float32) if self._format == "fltp" else pcm
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format=self._format, layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        frame.time_base = Fraction(1, self.sample_rate)
        self._pts += len(pcm)
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._sink.drain()

    def finish(self) -> bytes:
        if self.fmt not in _AV:
            return b""
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._sink.drain()
