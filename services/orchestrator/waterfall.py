"""The per-turn latency waterfall: when each stage of a turn happened, on one monotonic clock.

Stages (services/common/protocol/agent.py WATERFALL_STAGES), in order:
  speech_end        the ASR said the user stopped talking (or audio_end / user_text arrived)
  asr_final         the final transcript arrived
  llm_first_token   Claude's first text token (absent in direct mode)
  tts_first_audio   the first audio chunk of the answer came back from TTS
  first_audio_sent  that chunk was handed to the transport (browser: sent on the socket)
  done              the last audio of the turn was sent
The `done` frame carries each stage as milliseconds since speech_end (`stages_ms`), the step
between consecutive stages (`steps_ms`), and the same per-stage histograms go to /metrics.
"""

from __future__ import annotations

import time
from typing import Any

from services.common.protocol.agent import WATERFALL_STAGES

from . import metrics


class Waterfall:
    def __init__(self, turn: int, mode: str) -> None:
        self.turn = turn
        self.mode = mode
        self.times: dict[str, float] = {}

    def mark(self, stage: str, at: float | None = None) -> None:
        """First mark wins: a stage happens once per turn."""
        assert stage in WATERFALL_STAGES, stage
        self.times.setdefault(stage, time.monotonic() if at is None else at)

    def has(self, stage: str) -> bool:
        return stage in self.times

    def payload(self, **extra: Any) -> dict[str, Any]:
        t0 = self.times.get("speech_end")
        stages = {s: (round((self.times[s] - t0) * 1000, 1) if t0 is not None and s in self.times else None)
                  for s in WATERFALL_STAGES}  # fmt: skip
        steps: dict[str, float | None] = {}
        prev = None
        for stage in WATERFALL_STAGES:
            if stage in self.times:
                if prev is not None:
                    steps[f"{prev}->{stage}"] = round((self.times[stage] - self.times[prev]) * 1000, 1)
                prev = stage
        return {"turn": self.turn, "mode": self.mode, "stages_ms": stages, "steps_ms": steps, **extra}

    def observe(self) -> None:
        t0 = self.times.get("speech_end")
        if t0 is None:
            return
        for stage in WATERFALL_STAGES[1:]:
            if stage in self.times:
                metrics.STAGE_SECONDS.labels(stage).observe(max(0.0, self.times[stage] - t0))
        if "first_audio_sent" in self.times:
            metrics.FIRST_AUDIO_SECONDS.observe(max(0.0, self.times["first_audio_sent"] - t0))
