"""The recent audio of one stream, on its sample clock: the open turn plus the pre-speech pad.

Why a ring that outlives a turn: the VAD opens a turn a few frames after the speech really
starts (a soft onset like the "b" of "bread" scores low), so every turn reaches back
`pre_speech_pad_s` before its first speech frame. If finalizing a turn emptied the buffer, the
next turn could not reach back past that moment, and after a split (a turn ended at a pause,
the user goes on at once) its first word lost its onset ("bread" → "red"). Here a finalize only
marks where the finished turn's speech ended: the next turn's pad reaches back to that point at
most (so it never repeats the end of the previous turn), and never further than the pad.
"""

from __future__ import annotations

import numpy as np

from .transcript import SAMPLE_RATE

IDLE_EXTRA_S = 0.2  # kept beyond the pad while idle: the frames that open a turn


class AudioRing:
    def __init__(self, start: int, pad_s: float) -> None:
        self.frames: list[np.ndarray] = []
        self.start = start  # sample clock of frames[0][0]
        self.pad_s = pad_s
        self.floor = 0  # a turn's audio never starts before this sample (the previous turn's speech end)

    @property
    def end(self) -> int:
        return self.start + sum(len(f) for f in self.frames)

    def append(self, frame: np.ndarray) -> None:
        self.frames.append(frame)

    def trim_idle(self) -> None:
        """While nobody speaks keep only the pre-speech pad (plus the speech-start frames)."""
        keep = int((self.pad_s + IDLE_EXTRA_S) * SAMPLE_RATE)
        total = sum(len(x) for x in self.frames)
        while self.frames and total - len(self.frames[0]) >= keep:
            total -= len(self.frames[0])
            self.start += len(self.frames.pop(0))

    def turn_audio(self, turn_start: float) -> tuple[np.ndarray, float]:
        """Audio from the pre-speech pad before `turn_start` (stream seconds) to now, and its start time."""
        first = self._first(turn_start)
        audio = np.concatenate(self.frames) if self.frames else np.zeros(0, dtype=np.float32)
        return audio[first - self.start :], first / SAMPLE_RATE

    def turn_offset(self, turn_start: float) -> float:
        """Where `turn_audio(turn_start)` starts (stream seconds), without copying the audio."""
        return self._first(turn_start) / SAMPLE_RATE

    def _first(self, turn_start: float) -> int:
        want = max(0, self.floor, int(round((turn_start - self.pad_s) * SAMPLE_RATE)))
        return max(want, self.start)

    def finalized(self, speech_end: float | None) -> None:
        """A turn ended: its audio may go, the pad of the next one stays reachable."""
        if speech_end is not None:
            self.floor = max(self.floor, int(round(speech_end * SAMPLE_RATE)))
        self.trim_idle()
