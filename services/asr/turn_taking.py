"""Turn taking as a pure state machine on the sample clock (no I/O, no wall time).

Feed it one VAD probability per 32 ms frame; it answers with actions for the session:

    idle ──speech (2 frames ≥ vad threshold)──▶ speaking      → speech_start
    speaking ──stop_secs of silence──▶ paused                  → speech_end, then by mode:
        vad:        finalize("vad")
        smart_turn: check_turn (the session runs Smart Turn and calls `turn_probability`)
                    complete (p ≥ threshold) → finalize("smart_turn")
        none:       nothing; only flush / end finalize
    paused ──speech──▶ speaking (same turn)                    → speech_start
    paused ──max_silence_secs of silence (smart_turn)──▶ finalize("silence_timeout")
    a turn longer than max_turn_s                              → finalize("max_duration")

Because everything runs on stream time, the same audio always gives the same events.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.protocol.asr import TurnDetection

from .vad import FRAME_S

MIN_SPEECH_FRAMES = 2  # 64 ms: a single loud frame (a click) does not open a turn
NEGATIVE_OFFSET = 0.15  # Silero's hysteresis: below threshold - 0.15 counts as silence


@dataclass(frozen=True)
class Action:
    kind: str  # speech_start | speech_end | check_turn | finalize
    timestamp: float
    reason: str | None = None
    probability: float | None = None
    turn_start: float | None = None  # finalize: the turn's first speech (stream seconds)
    speech_end: float | None = None  # finalize: the turn's last speech


class TurnTaker:
    def __init__(self, detection: TurnDetection, vad_threshold: float = 0.5, max_turn_s: float = 30.0) -> None:
        self.detection = detection
        self.vad_threshold = vad_threshold
        self.max_turn_s = max_turn_s
        self.reset()

    def reset(self) -> None:
        self.state = "idle"
        self.turn_start: float | None = None
        self.speech_start: float | None = None
        self.last_speech_end = 0.0
        self.silence_s = 0.0
        self.candidate_frames = 0
        self.probability: float | None = None

    @property
    def in_turn(self) -> bool:
        return self.state != "idle"

    def frame(self, prob: float, end: float) -> list[Action]:
        """One 32 ms frame ending at stream time `end` with speech probability `prob`."""
        start = end - FRAME_S
        if self.state == "idle":
            if prob >= self.vad_threshold:
                self.candidate_frames += 1
                if self.candidate_frames >= MIN_SPEECH_FRAMES:
                    self.state = "speaking"
                    self.turn_start = round(start - (MIN_SPEECH_FRAMES - 1) * FRAME_S, 3)
                    self.last_speech_end = end
                    self.silence_s = 0.0
                    return [Action("speech_start", self.turn_start)]
            else:
                self.candidate_frames = 0
            return []
        actions: list[Action] = []
        if self.state == "speaking":
            if prob >= self.vad_threshold - NEGATIVE_OFFSET:
                self.last_speech_end = end
                self.silence_s = 0.0
            else:
                self.silence_s += FRAME_S
                if self.silence_s >= self.detection.stop_secs - 1e-9:
                    actions += self._pause()
        elif self.state == "paused":
            if prob >= self.vad_threshold:
                self.state = "speaking"
                self.last_speech_end = end
                self.silence_s = 0.0
                actions.append(Action("speech_start", round(start, 3)))
            else:
                self.silence_s += FRAME_S
                if self.detection.mode == "smart_turn" and self.silence_s >= self.detection.max_silence_secs - 1e-9:
                    actions.append(self._finalize("silence_timeout", end))
        if self.state != "idle" and self.turn_start is not None and end - self.turn_start >= self.max_turn_s:
            actions += self.force("max_duration", end)
        return actions

    def _pause(self) -> list[Action]:
        self.state = "paused"
        actions = [Action("speech_end", round(self.last_speech_end, 3))]
        if self.detection.mode == "vad":
            actions.append(self._finalize("vad", self.last_speech_end))
        elif self.detection.mode == "smart_turn":
            actions.append(Action("check_turn", round(self.last_speech_end, 3)))
        return actions

    def turn_probability(self, probability: float, now: float) -> list[Action]:
        """Smart Turn's answer to the last check_turn."""
        self.probability = probability
        if self.state == "paused" and probability >= self.detection.threshold:
            return [self._finalize("smart_turn", now)]
        return []

    def force(self, reason: str, now: float) -> list[Action]:
        """flush / end / max_duration / shutdown: end the open turn now (no-op when none is open)."""
        if self.state == "idle":
            self.candidate_frames = 0
            return []
        actions = []
        if self.state == "speaking":
            self.last_speech_end = now
            actions.append(Action("speech_end", round(now, 3)))
        actions.append(self._finalize(reason, now))
        return actions

    def _finalize(self, reason: str, now: float) -> Action:
        """Ends the turn: the action carries its bounds, the machine is idle again."""
        action = Action(
            "finalize",
            round(now, 3),
            reason=reason,
            probability=self.probability,
            turn_start=self.turn_start,
            speech_end=round(self.last_speech_end, 3),
        )
        self.reset()
        return action
