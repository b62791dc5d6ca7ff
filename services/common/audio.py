"""Audio encodings, μ-law, resampling and WAV helpers shared by every service and the clients.

Everything inside the stack is mono float32 in [-1, 1]; encodings only exist at the edges
(WebSocket frames, files, Twilio). Keeping one conversion point means one place to get
clipping, endianness and odd-length frames right.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass, field

import numpy as np
import soxr

from services.common.errors import CodedError

ENCODINGS = ("pcm_s16le", "pcm_f32le", "mulaw")
# A-law is decoded for the transports that carry it (OpenAI Realtime `audio/pcma`), not offered on ours
BYTES_PER_SAMPLE = {"pcm_s16le": 2, "pcm_f32le": 4, "mulaw": 1, "alaw": 1}
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 48000


class AudioFormatError(CodedError, ValueError):
    """Raised for audio bytes that cannot be decoded in the declared format (still a ValueError)."""


# ---------------------------------------------------------------- μ-law (G.711)
_MULAW_BIAS = 0x84


def _build_mulaw_decode_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.int16)
    for i in range(256):
        u = ~i & 0xFF
        sign = u & 0x80
        exponent = (u >> 4) & 0x07
        mantissa = u & 0x0F
        magnitude = ((mantissa << 3) + _MULAW_BIAS) << exponent
        magnitude -= _MULAW_BIAS
        table[i] = -magnitude if sign else magnitude
    return table


_MULAW_DECODE = _build_mulaw_decode_table()


def mulaw_decode(data: bytes) -> np.ndarray:
    """G.711 μ-law bytes → int16 samples (the standard ITU table)."""
    return _MULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def mulaw_encode(samples: np.ndarray) -> bytes:
    """int16 samples → G.711 μ-law bytes, bit-exact with the ITU reference (14-bit, floor shift)."""
    x = samples.astype(np.int32) >> 2
    negative = x < 0
    mag = np.minimum(np.where(negative, -x, x), 8159) + (_MULAW_BIAS >> 2)
    segment = np.maximum(np.floor(np.log2(mag)).astype(np.int32) - 5, 0)
    value = np.where(segment > 7, 0x7F, (np.minimum(segment, 7) << 4) | ((mag >> (np.minimum(segment, 7) + 1)) & 0x0F))
    out = value ^ np.where(negative, 0x7F, 0xFF)
    return out.astype(np.uint8).tobytes()


# ---------------------------------------------------------------- A-law (G.711)
def _build_alaw_decode_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.int16)
    for i in range(256):
        a = i ^ 0x55
        t = (a & 0x0F) << 4
        segment = (a & 0x70) >> 4
        t += 8 if segment == 0 else 0x108
        if segment > 1:
            t <<= segment - 1
        table[i] = t if a & 0x80 else -t
    return table


_ALAW_DECODE = _build_alaw_decode_table()
_ALAW_SEGMENT_ENDS = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def alaw_decode(data: bytes) -> np.ndarray:
    """G.711 A-law bytes → int16 samples (the standard ITU table)."""
    return _ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def alaw_encode(samples: np.ndarray) -> bytes:
    """int16 samples → G.711 A-law bytes (the ITU reference: 13-bit, segment search)."""
    x = samples.astype(np.int32) >> 3
    positive = x >= 0
    mask = np.where(positive, 0xD5, 0x55)
    x = np.where(positive, x, -x - 1)
    segment = np.searchsorted(_ALAW_SEGMENT_ENDS, x, side="left")
    shift = np.where(segment < 2, 1, segment)
    value = (np.minimum(segment, 7) << 4) | ((x >> shift) & 0x0F)
    value = np.where(segment >= 8, 0x7F, value)
    return (value ^ mask).astype(np.uint8).tobytes()


# ---------------------------------------------------------------- PCM <-> float
def float_to_int16(audio: np.ndarray) -> np.ndarray:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)


def int16_to_float(samples: np.ndarray) -> np.ndarray:
    return samples.astype(np.float32) / 32768.0


def decode(data: bytes, encoding: str) -> np.ndarray:
    """Raw bytes in `encoding` → mono float32. Rejects frames that are not whole samples."""
    if encoding not in BYTES_PER_SAMPLE:
        raise AudioFormatError("bad_encoding", f"unknown encoding {encoding!r}; use one of {', '.join(ENCODINGS)}")
    width = BYTES_PER_SAMPLE[encoding]
    if len(data) % width:
        raise AudioFormatError(
            "bad_frame",
            f"{encoding} frame of {len(data)} bytes is not a whole number of {width}-byte samples",
        )
    if encoding == "pcm_s16le":
        return int16_to_float(np.frombuffer(data, dtype="<i2"))
    if encoding == "pcm_f32le":
        audio = np.frombuffer(data, dtype="<f4").astype(np.float32)
        if not np.all(np.isfinite(audio)):
            raise AudioFormatError("bad_frame", "pcm_f32le frame holds NaN or infinite samples")
        return audio
    if encoding == "alaw":
        return int16_to_float(alaw_decode(data))
    return int16_to_float(mulaw_decode(data))


def encode(audio: np.ndarray, encoding: str) -> bytes:
    """Mono float32 → raw bytes in `encoding`."""
    if encoding == "pcm_f32le":
        return np.asarray(audio, dtype="<f4").tobytes()
    if encoding == "pcm_s16le":
        return float_to_int16(audio).astype("<i2").tobytes()
    if encoding == "mulaw":
        return mulaw_encode(float_to_int16(audio))
    if encoding == "alaw":
        return alaw_encode(float_to_int16(audio))
    raise AudioFormatError("bad_encoding", f"unknown encoding {encoding!r}; use one of {', '.join(ENCODINGS)}")


def validate_sample_rate(rate: object) -> int:
    if not isinstance(rate, int) or isinstance(rate, bool) or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioFormatError(
            "bad_sample_rate",
            f"sample_rate must be an integer from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE}, got {rate!r}",
        )
    return rate


# ---------------------------------------------------------------- resampling
def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """One-shot resample of a whole clip (soxr, high quality)."""
    if from_rate == to_rate or len(audio) == 0:
        return np.asarray(audio, dtype=np.float32)
    return soxr.resample(np.asarray(audio, dtype=np.float32), from_rate, to_rate, quality="HQ").astype(np.float32)


@dataclass
class StreamResampler:
    """Resamples a stream chunk by chunk without clicks at chunk joins (soxr keeps filter state).

    Call `flush()` at the end of the stream to get the filter's tail; otherwise the last few
    milliseconds stay inside soxr.
    """

    from_rate: int
    to_rate: int
    _stream: soxr.ResampleStream | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.from_rate != self.to_rate:
            self._stream = soxr.ResampleStream(self.from_rate, self.to_rate, 1, dtype="float32", quality="HQ")

    def process(self, audio: np.ndarray, last: bool = False) -> np.ndarray:
        audio = np.asarray(audio, dtype=np.float32)
        if self._stream is None:
            return audio
        return self._stream.resample_chunk(audio, last=last)

    def flush(self) -> np.ndarray:
        return self.process(np.zeros(0, dtype=np.float32), last=True)


# ---------------------------------------------------------------- WAV
def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """Mono float32 → 16-bit PCM WAV file bytes."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(float_to_int16(audio).astype("<i2").tobytes())
    return buf.getvalue()


def wav_header(sample_rate: int, bits: int = 16, channels: int = 1, data_size: int = 0xFFFFFFFF - 36) -> bytes:
    """A WAV header for a stream whose length is not known yet (sizes set to the maximum, as
    OpenAI's streamed WAV does); players and PyAV read such a stream to its end."""
    import struct

    byte_rate = sample_rate * channels * bits // 8
    return (
        b"RIFF"
        + struct.pack("<I", min(data_size + 36, 0xFFFFFFFF))
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, byte_rate, channels * bits // 8, bits)
        + b"data"
        + struct.pack("<I", min(data_size, 0xFFFFFFFF))
    )


# what an upload may declare before a single sample is decoded: beyond these it is not audio we
# take (a 2 MHz, 255-channel stream multiplies memory per decoded second)
MAX_FILE_SAMPLE_RATE = 192000
MAX_FILE_CHANNELS = 8


class AudioTooLong(AudioFormatError):
    """The decoded audio passed the duration cap; raised while decoding, so a highly compressed
    file (hours of silence in a few MB of FLAC) costs at most the cap in memory and CPU."""

    def __init__(self, max_seconds: float) -> None:
        super().__init__("audio_too_long", f"audio longer than the limit of {max_seconds:g} s")
        self.max_seconds = max_seconds


def decode_file(data: bytes, target_rate: int = 16000, max_seconds: float | None = None) -> np.ndarray:
    """Any container/codec PyAV can read → mono float32 at `target_rate`, decoded as a stream.

    The one bounded decoder for uploads (ASR files, TTS reference clips): sample rate and
    channel count are checked on every frame, the running duration is checked after every
    frame against `max_seconds` (AudioTooLong as soon as it is passed, nothing more decoded),
    and NaN / infinite samples (float PCM) are refused. It is CPU-bound: call it in a worker
    thread (`asyncio.to_thread`), never on the event loop.

    Raises AudioFormatError('bad_audio', …) for bytes that hold no decodable audio stream.
    """
    import av

    limit = None if max_seconds is None else int(max_seconds * target_rate)
    parts: list[np.ndarray] = []
    total = 0
    seconds_in = 0.0

    def take(frames) -> None:
        nonlocal total
        for out in frames:
            samples = out.to_ndarray().reshape(-1)
            if not np.all(np.isfinite(samples)):
                raise AudioFormatError("bad_audio", "the audio holds NaN or infinite samples")
            total += len(samples)
            if limit is not None and total > limit:
                raise AudioTooLong(max_seconds)
            parts.append(samples)

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise AudioFormatError("bad_audio", "the file holds no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=target_rate)
            for frame in container.decode(audio=0):
                if not 1 <= (frame.sample_rate or 0) <= MAX_FILE_SAMPLE_RATE:
                    raise AudioFormatError(
                        "bad_audio", f"sample rate {frame.sample_rate} outside 1-{MAX_FILE_SAMPLE_RATE} Hz"
                    )
                if len(frame.layout.channels) > MAX_FILE_CHANNELS:
                    raise AudioFormatError("bad_audio", f"more than {MAX_FILE_CHANNELS} audio channels")
                seconds_in += frame.samples / frame.sample_rate
                if max_seconds is not None and seconds_in > max_seconds + 1.0:
                    raise AudioTooLong(max_seconds)  # the resampler's own buffer cannot hide length
                take(resampler.resample(frame))
            take(resampler.resample(None))
    except AudioFormatError:
        raise
    except Exception as exc:  # PyAV raises many types (InvalidDataError, EOFError, ValueError...)
        raise AudioFormatError("bad_audio", f"could not decode audio: {type(exc).__name__}") from exc
    if not parts:
        raise AudioFormatError("bad_audio", "the file holds no decodable audio")
    return np.concatenate(parts).astype(np.float32)


def rms_dbfs(audio: np.ndarray) -> float:
    if len(audio) == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return 20.0 * np.log10(max(rms, 1e-12))
