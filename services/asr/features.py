"""Whisper log-mel features for Smart Turn v3, from faster-whisper's numpy extractor.

Smart Turn v3 was trained on `transformers.WhisperFeatureExtractor(chunk_length=8)` output with
`do_normalize=True`: the last 8 s of 16 kHz audio, zero-padded at the FRONT, normalised to zero
mean / unit variance, then a centred 400-point STFT (hop 160), Slaney mel filters, log10, the
"max - 8" floor and (x + 4) / 4. faster-whisper's extractor does the same STFT/mel/log maths
(float32 instead of float64; tests/asr/test_models.py checks the match against the reference
formulas), so we reuse it with `padding=0` (its default pads 160 extra samples for Whisper) and
never import transformers or pipecat in the service.
"""

from __future__ import annotations

import numpy as np
from faster_whisper.feature_extractor import FeatureExtractor

from .transcript import SAMPLE_RATE

WINDOW_S = 8
WINDOW_SAMPLES = SAMPLE_RATE * WINDOW_S
N_MELS = 80
N_FRAMES = 800
_NORM_EPS = 1e-7

_extractor = FeatureExtractor(feature_size=N_MELS, sampling_rate=SAMPLE_RATE, chunk_length=WINDOW_S)


def last_window(audio: np.ndarray) -> np.ndarray:
    """The last 8 s of `audio`, zero-padded at the front to exactly 8 s (what Smart Turn saw in training)."""
    audio = np.asarray(audio, dtype=np.float32)
    if len(audio) >= WINDOW_SAMPLES:
        return audio[-WINDOW_SAMPLES:]
    return np.concatenate([np.zeros(WINDOW_SAMPLES - len(audio), dtype=np.float32), audio])


def smart_turn_features(audio: np.ndarray) -> np.ndarray:
    """16 kHz mono float32 turn audio → float32 [80, 800] input features for Smart Turn v3."""
    x = last_window(audio)
    x = (x - x.mean()) / np.sqrt(x.var() + _NORM_EPS)
    features = _extractor(x, padding=0)
    return np.ascontiguousarray(features[:, :N_FRAMES], dtype=np.float32)
