"""Silero VAD v6 (the ONNX faster-whisper ships) run frame by frame on a live stream.

The model takes 512 new samples at 16 kHz (32 ms) plus the previous frame's last 64 samples as
context, and carries an LSTM state (h, c) from frame to frame. One InferenceSession is shared by
all sessions (onnxruntime's run() is thread-safe); the per-stream state lives in `VADStream`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import faster_whisper
import numpy as np
import onnxruntime as ort

from .transcript import SAMPLE_RATE

FRAME_SAMPLES = 512
CONTEXT_SAMPLES = 64
FRAME_S = FRAME_SAMPLES / SAMPLE_RATE
MODEL_PATH = os.path.join(os.path.dirname(faster_whisper.__file__), "assets", "silero_vad_v6.onnx")


class SileroVAD:
    def __init__(self, path: str = MODEL_PATH) -> None:
        options = ort.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])

    def stream(self) -> VADStream:
        return VADStream(self)


@dataclass
class VADStream:
    """Speech probability per 32 ms frame of one audio stream, keeping the model state between calls."""

    model: SileroVAD
    h: np.ndarray = field(default_factory=lambda: np.zeros((1, 1, 128), dtype=np.float32))
    c: np.ndarray = field(default_factory=lambda: np.zeros((1, 1, 128), dtype=np.float32))
    context: np.ndarray = field(default_factory=lambda: np.zeros(CONTEXT_SAMPLES, dtype=np.float32))

    def probabilities(self, frames: np.ndarray) -> list[float]:
        """`frames`: float32 samples, a whole number of 512-sample frames → one probability each.

        Blocking (onnxruntime); callers run it off the event loop."""
        frames = np.asarray(frames, dtype=np.float32)
        if len(frames) % FRAME_SAMPLES:
            raise ValueError(f"VAD input must be a multiple of {FRAME_SAMPLES} samples")
        out: list[float] = []
        for start in range(0, len(frames), FRAME_SAMPLES):
            frame = frames[start : start + FRAME_SAMPLES]
            window = np.concatenate([self.context, frame])[None, :]
            prob, self.h, self.c = self.model.session.run(None, {"input": window, "h": self.h, "c": self.c})
            self.context = frame[-CONTEXT_SAMPLES:].copy()
            out.append(float(np.asarray(prob).reshape(-1)[0]))
        return out
