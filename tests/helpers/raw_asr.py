"""Raw faster-whisper, configured as the ASR service configures it: the reference the service's
words are compared with (tests/asr/test_wer.py, bench/asr_wer.py)."""

from __future__ import annotations

import numpy as np

from services.asr.config import ASRConfig
from services.common.audio import decode, encode


def as_sent(audio: np.ndarray) -> np.ndarray:
    """The samples the service decodes from 16-bit PCM (a WAV upload, a pcm_s16le stream)."""
    return decode(encode(audio, "pcm_s16le"), "pcm_s16le")


def load(config: ASRConfig):
    """`WhisperModel` with the service's model, threads per worker and compute type (int8 on CPU)."""
    from faster_whisper import WhisperModel

    from services.asr.transcriber import resolved

    threads = resolved(config).cpu_threads
    return WhisperModel(config.model, device="cpu", compute_type="int8", cpu_threads=threads)


def text(model, audio: np.ndarray, config: ASRConfig) -> str:
    """One clip as a file: the decode settings the service uses (beam, first temperature, no
    conditioning on earlier text, no VAD filter), English."""
    segments, _ = model.transcribe(
        as_sent(audio),
        language="en",
        beam_size=config.beam_size,
        temperature=config.temperatures[0],
        condition_on_previous_text=False,
        vad_filter=False,
    )
    return "".join(s.text for s in segments)
