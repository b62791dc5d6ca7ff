"""Real speech for tests: espeak-ng renders text (a subprocess), Piper renders it with the real
en_US-joe-medium voice (`piper.PiperVoice`, onnxruntime on one thread); sox-free, resampled with the
shared soxr helper. Both are deterministic: the same text gives the same samples every run."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import subprocess
import wave
from importlib.metadata import version
from pathlib import Path

import numpy as np

from services.common.audio import int16_to_float, resample
from services.common.config import MODELS_DIR

PIPER_VOICE = MODELS_DIR / "piper" / "en_US-joe-medium.onnx"
# Piper's VITS draws noise inside the ONNX graph from an unseeded generator, so its default noise
# scales (0.667 / 0.8) give different samples on every call; with both at 0 the voice is the model's
# mean rendering, identical every run (still natural speech, a little flatter)
PIPER_NOISE = 0.0
CACHE_DIR = Path(__file__).resolve().parents[1] / "artifacts" / "speech-cache"


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


@functools.lru_cache(maxsize=4)
def piper_voice(path: str = str(PIPER_VOICE)):
    """One loaded voice per process; one onnxruntime thread, so tests beside a service stay light."""
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    config = PiperConfig.from_dict(json.loads(Path(path + ".json").read_text()))
    session = onnxruntime.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    return PiperVoice(session=session, config=config)


def _piper_key(text: str, path: str) -> str:
    """Text + voice file (size and config) + settings + package version: a changed voice is a new key."""
    voice = Path(path)
    parts = [text, voice.name, str(voice.stat().st_size), Path(path + ".json").read_text(), str(PIPER_NOISE)]
    parts.append(version("piper-tts"))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


@functools.lru_cache(maxsize=256)
def _piper(text: str, path: str) -> tuple[np.ndarray, int]:
    """Rendered once per process; also kept on disk (tests/artifacts/, git-ignored) across runs."""
    from piper.config import SynthesisConfig

    cached = CACHE_DIR / f"piper-{_piper_key(text, path)}.npy"
    rate = int(json.loads(Path(path + ".json").read_text())["audio"]["sample_rate"])
    if cached.is_file():
        return np.load(cached), rate
    settings = SynthesisConfig(noise_scale=PIPER_NOISE, noise_w_scale=PIPER_NOISE)
    chunks = [chunk.audio_float_array for chunk in piper_voice(path).synthesize(text, syn_config=settings)]
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(partial, audio)
    partial.replace(cached)  # atomic: parallel test processes never read half a file
    return audio, rate


def speak_piper(text: str, rate: int = 16000, voice: Path | str = PIPER_VOICE) -> np.ndarray:
    """Mono float32 Piper speech at `rate` (the voice's own rate is 22.05 kHz)."""
    audio, src_rate = _piper(text, str(voice))
    return resample(audio, src_rate, rate)


def trimmed(audio: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    """The clip from its first to its last sample above `floor`: engines pad speech with silence,
    and a test's own pauses should be exact."""
    voiced = np.nonzero(np.abs(audio) > floor)[0]
    return audio[voiced[0] : voiced[-1] + 1] if len(voiced) else audio[:0]


def silence(seconds: float, rate: int = 16000) -> np.ndarray:
    return np.zeros(int(round(seconds * rate)), dtype=np.float32)


def concat(*parts: np.ndarray) -> np.ndarray:
    return np.concatenate(parts).astype(np.float32)
