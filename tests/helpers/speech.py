"""Real speech for tests: espeak-ng renders text; sox-free, resampled with the shared soxr helper."""

from __future__ import annotations

import functools
import io
import subprocess
import wave

import numpy as np

from services.common.audio import int16_to_float, resample


@functools.lru_cache(maxsize=64)
def _espeak(text: str, voice: str, speed: int) -> tuple[bytes, int]:
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text], check=True, capture_output=True
    ).stdout
    with wave.open(io.BytesIO(wav)) as w:
        return w.readframes(w.getnframes()), w.getframerate()


def speak(text: str, rate: int = 16000, voice: str = "en-us", speed: int = 160) -> np.ndarray:
    """Mono float32 speech at `rate`."""
    frames, src_rate = _espeak(text, voice, speed)
    return resample(int16_to_float(np.frombuffer(frames, dtype="<i2")), src_rate, rate)


def silence(seconds: float, rate: int = 16000) -> np.ndarray:
    return np.zeros(int(round(seconds * rate)), dtype=np.float32)


def concat(*parts: np.ndarray) -> np.ndarray:
    return np.concatenate(parts).astype(np.float32)
