"""Small files that decode to a lot (or to nothing valid), generated at test time with PyAV."""

from __future__ import annotations

import io
import struct
import wave

import av
import numpy as np


def silent_flac(seconds: float, rate: int = 8000) -> bytes:
    """`seconds` of digital silence as FLAC: ~190 bytes per second of audio at 8 kHz (2 h ≈ 1.3 MB),
    while decoding it at 16 kHz float32 needs 64 kB per second (2 h ≈ 460 MB)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="flac") as out:
        stream = out.add_stream("flac", rate=rate, layout="mono")
        stream.codec_context.format = "s16"
        block = np.zeros((1, 4608 * 8), dtype=np.int16)
        total, done = int(seconds * rate), 0
        while done < total:
            part = block[:, : min(block.shape[1], total - done)]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(part), format="s16", layout="mono")
            frame.sample_rate = rate
            frame.pts = done
            for packet in stream.encode(frame):
                out.mux(packet)
            done += part.shape[1]
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def float_wav(samples: np.ndarray, rate: int = 16000) -> bytes:
    """A WAVE_FORMAT_IEEE_FLOAT (format 3) mono file: the stdlib `wave` only writes integer PCM."""
    data = np.asarray(samples, dtype="<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def int_wav(seconds: float, rate: int, channels: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.zeros(int(seconds * rate) * channels, dtype="<i2").tobytes())
    return buf.getvalue()
