"""Turn taking as a pure state machine on the sample clock (no I/O, no wall time).

Feed it one VAD probability per 32 ms frame; it answers with actions for the session:

    idle ──speech (2 frames ≥ vad threshold)──▶ speaking      → speech_start
    speaking ──stop_secs of silence──▶ paused                  → speech_end, then by mode:
        vad:        finalize("vad")
        smart_turn: check_turn (the session runs Smart Turn and calls `turn_probability`)
                    complete (p ≥ threshold) → finalize("smart_turn")
        none:       nothing; only flush / end finalize
    paused ──speech──▶ speaking (same turn)                    → speech_start
    paused ──each re-check point of silence (smart_turn)──▶ check_turn again
    paused ──max_silence_secs of silence (smart_turn)──▶ finalize("silence_timeout")
    a turn longer than max_turn_s                              → finalize("max_duration")

End of turn that re-checks (`Endpointing`): Smart Turn answers once at stop_secs, and again as
the silence grows (`recheck_secs`, e.g. 0.5 and 1.0 s), against a threshold that falls at each
re-check point passed (`threshold × decay^k`): an unsure but complete sentence ends after about a
second instead of waiting for max_silence_secs, while a pause inside a sentence (low answers,
speech resumes soon) is still bridged. The live transcript is the second signal: a turn whose text
so far ends on a word that cannot end an English sentence ("to", "the", "and", …) is not finalized
by Smart Turn before `continuation_wait_s` of silence, however sure Smart Turn is; and after
`text_complete_s` of silence a transcript that ends a sentence (".", "?", "!") ends the turn even
when Smart Turn stays unsure (reason "transcript"); a transcript ending in "?" does so from
`question_complete_s` (by default at the first check): Whisper writes "?" only for a question's
form or rise, the surest sign in the text that the user is waiting for an answer. The question
limit only reads the transcript; it does not lower the bar, or it would end every unsure turn
sooner, questions or not.

Because everything runs on stream time, the same audio always gives the same events.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum

from services.common.protocol.asr import TurnDetection

from .vad import FRAME_S

MIN_SPEECH_FRAMES = 2  # 64 ms: a single loud frame (a click) does not open a turn
NEGATIVE_OFFSET = 0.15  # Silero's hysteresis: below threshold - 0.15 counts as silence


# words after which an English sentence goes on: articles, prepositions, conjunctions, possessive
# determiners and fillers. Words that often end a sentence too ("you", "it", "that", "can",
# "is" ...) are left out: a wrong hold costs up to ASR_CONTINUATION_WAIT_SECS of waiting.
CONTINUATION_WORDS = frozenset(
    """a an the to of in into onto on at by for from with about as than like and or but nor
    because if although though unless until while whereas my your his its our their very um uh
    let's""".split()
)
_WORD = re.compile(r"[a-z0-9']+")  # Whisper writes numbers as digits: "at 9." ends on "9", not "at"


def ends_mid_sentence(text: str) -> bool:
    """True when `text` ends on a continuation word. Trailing '.', ',', '!' and ellipses are ignored
    (Whisper closes a fragment with "..." or "." as readily as a sentence); a '?' is trusted."""
    stripped = text.strip().rstrip(".,!…").rstrip()
    if not stripped or text.strip().endswith("?"):
        return False
    words = _WORD.findall(stripped.lower())
    return bool(words) and words[-1] in CONTINUATION_WORDS


@dataclass(frozen=True)
class Endpointing:
    """How the end of a turn is re-checked (services/asr/config.py: ASR_TURN_RECHECK_SECS,
    ASR_TURN_THRESHOLD_DECAY, ASR_CONTINUATION_WAIT_SECS)."""

    recheck_secs: tuple[float, ...] = (0.5, 1.0)
    decay: float = 0.5
    continuation_wait_s: float = 2.0
    text_complete_s: float = 1.5  # 0 = off
    question_complete_s: float = 0.2  # the same for a transcript ending in "?" (0 = off; ≤ stop_secs: the first check)

    def text_limits(self) -> tuple[float, ...]:
        """The silences at which the transcript alone may end a turn (the enabled ones)."""
        return tuple(x for x in (self.text_complete_s, self.question_complete_s) if x > 0)

    @classmethod
    def once(cls) -> Endpointing:
        """The plain behaviour: one check at stop_secs, no text signal."""
        return cls(recheck_secs=(), decay=1.0, continuation_wait_s=0.0, text_complete_s=0.0, question_complete_s=0.0)


@dataclass
class Check:
    silence: float
    probability: float
    threshold: float

    def to_dict(self) -> dict[str, float]:
        return {
            "silence": round(self.silence, 3),
            "probability": round(self.probability, 4),
            "threshold": round(self.threshold, 4),
        }


class TurnPhase(StrEnum):
    """The TurnTaker's states (the diagram above)."""

    IDLE = "idle"
    SPEAKING = "speaking"
    PAUSED = "paused"


class ActionKind(StrEnum):
    SPEECH_START = "speech_start"
    SPEECH_END = "speech_end"
    CHECK_TURN = "check_turn"
    FINALIZE = "finalize"


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    timestamp: float
    reason: str | None = None
    probability: float | None = None
    turn_start: float | None = None  # finalize: the turn's first speech (stream seconds)
    speech_end: float | None = None  # finalize: the turn's last speech
    checks: tuple[Check, ...] = ()  # finalize: the Smart Turn decisions of the turn
    held: str | None = None  # finalize: why a complete-looking turn waited ("continuation")


class TurnTaker:
    def __init__(
        self,
        detection: TurnDetection,
        vad_threshold: float = 0.5,
        max_turn_s: float = 30.0,
        endpointing: Endpointing | None = None,
    ) -> None:
        self.detection = detection
        self.vad_threshold = vad_threshold
        self.max_turn_s = max_turn_s
        self.endpointing = endpointing or Endpointing.once()  # the service passes its configured one
        self.reset()

    def reset(self) -> None:
        self.state = TurnPhase.IDLE
        self.turn_start: float | None = None
        self.speech_start: float | None = None
        self.last_speech_end = 0.0
        self.silence_s = 0.0
        self.candidate_frames = 0
        self.probability: float | None = None
        self.checks: list[Check] = []
        self.held: str | None = None
        self._lowered = 0  # re-check points this pause has passed: the bar has fallen this many times
        self._points: list[float] = []  # silence (s) at which the current pause checks again
        self._lowering: frozenset[float] = frozenset()  # those of them that lower the bar

    @property
    def in_turn(self) -> bool:
        return self.state != TurnPhase.IDLE

    def frame(self, prob: float, end: float) -> list[Action]:
        """One 32 ms frame ending at stream time `end` with speech probability `prob`."""
        start = end - FRAME_S
        if self.state == TurnPhase.IDLE:
            if prob >= self.vad_threshold:
                self.candidate_frames += 1
                if self.candidate_frames >= MIN_SPEECH_FRAMES:
                    self.state = TurnPhase.SPEAKING
                    self.turn_start = round(start - (MIN_SPEECH_FRAMES - 1) * FRAME_S, 3)
                    self.last_speech_end = end
                    self.silence_s = 0.0
                    return [Action(ActionKind.SPEECH_START, self.turn_start)]
            else:
                self.candidate_frames = 0
            return []
        actions: list[Action] = []
        if self.state == TurnPhase.SPEAKING:
            if prob >= self.vad_threshold - NEGATIVE_OFFSET:
                self.last_speech_end = end
                self.silence_s = 0.0
            else:
                self.silence_s += FRAME_S
                if self.silence_s >= self.detection.stop_secs - 1e-9:
                    actions += self._pause()
        elif self.state == TurnPhase.PAUSED:
            if prob >= self.vad_threshold:
                self.state = TurnPhase.SPEAKING
                self.last_speech_end = end
                self.silence_s = 0.0
                actions.append(Action(ActionKind.SPEECH_START, round(start, 3)))
            else:
                self.silence_s += FRAME_S
                if self.detection.mode == "smart_turn" and self.silence_s >= self.detection.max_silence_secs - 1e-9:
                    actions.append(self._finalize("silence_timeout", end))
                elif self.detection.mode == "smart_turn" and self._points and self.silence_s >= self._points[0] - 1e-9:
                    if self._points.pop(0) in self._lowering:
                        self._lowered += 1
                    actions.append(Action(ActionKind.CHECK_TURN, round(self.last_speech_end, 3)))
        if self.state != TurnPhase.IDLE and self.turn_start is not None and end - self.turn_start >= self.max_turn_s:
            actions += self.force("max_duration", end)
        return actions

    def _pause(self) -> list[Action]:
        self.state = TurnPhase.PAUSED
        actions = [Action(ActionKind.SPEECH_END, round(self.last_speech_end, 3))]
        if self.detection.mode == "vad":
            actions.append(self._finalize("vad", self.last_speech_end))
        elif self.detection.mode == "smart_turn":
            self._lowered = 0
            stop = self.detection.stop_secs
            limit = self.detection.max_silence_secs
            ep = self.endpointing
            points = {*ep.recheck_secs, *ep.text_limits()}
            self._points = sorted(p for p in points if stop < p < limit)
            # the question limit only looks at the transcript: were it to lower the bar as well, a
            # short question limit would end every unsure turn sooner, questions or not
            self._lowering = frozenset(p for p in points if p != ep.question_complete_s or p in ep.recheck_secs)
            actions.append(Action(ActionKind.CHECK_TURN, round(self.last_speech_end, 3)))
        return actions

    def frames_to_first_check(self) -> int:
        """Frames of silence still to come before the first check of this pause (`frame` checks at
        the first frame whose silence reaches stop_secs), as if only silence came from now on."""
        needed = math.ceil((self.detection.stop_secs - 1e-9) / FRAME_S)
        return max(0, needed - round(self.silence_s / FRAME_S))

    @property
    def threshold(self) -> float:
        """The threshold the next Smart Turn answer of this pause is held to: it falls at each
        re-check point the silence has passed (recheck_secs, the text limit, a hold's end), not at
        the question limit."""
        return self.detection.threshold * self.endpointing.decay**self._lowered

    def turn_probability(self, probability: float, now: float, text: str | None = None) -> list[Action]:
        """Smart Turn's answer to the last check_turn; `text`: the turn's transcript so far, when known."""
        self.probability = probability
        threshold = self.threshold
        if self.state != TurnPhase.PAUSED:
            return []
        self.checks.append(Check(self.silence_s, probability, threshold))
        if probability < threshold:
            if self._text_says_complete(text):
                return [self._finalize("transcript", now)]
            return []
        wait = self.endpointing.continuation_wait_s
        if text is not None and ends_mid_sentence(text) and self.silence_s < wait - 1e-9:
            self.held = "continuation"
            if wait < self.detection.max_silence_secs and wait not in self._points:
                self._points = sorted([*self._points, wait])  # one more look once the hold is over
                self._lowering |= {wait}
            return []
        return [self._finalize("smart_turn", now)]

    def _text_says_complete(self, text: str | None) -> bool:
        """After `text_complete_s` of silence, a transcript that ends a sentence ('.', '?', '!') and
        not on a continuation word ends the turn even when Smart Turn stays unsure."""
        if text is None:
            return False
        stripped = text.strip()
        ep = self.endpointing
        limits = [ep.text_complete_s] if ep.text_complete_s > 0 else []
        if stripped.endswith("?") and ep.question_complete_s > 0:
            limits.append(ep.question_complete_s)
        if not limits or self.silence_s < min(limits) - 1e-9:
            return False
        return bool(stripped) and stripped[-1] in ".?!" and not stripped.endswith("...") and not ends_mid_sentence(text)

    def wants_text(self, probability: float) -> bool:
        """Is the transcript worth waiting for before deciding on `probability`? While a text hold is
        possible on a 'complete' answer, or once the transcript alone may end the turn."""
        ep = self.endpointing
        if probability >= self.threshold:
            return ep.continuation_wait_s > 0 and self.silence_s < ep.continuation_wait_s
        limits = ep.text_limits()
        return bool(limits) and self.silence_s >= min(limits) - 1e-9

    def force(self, reason: str, now: float) -> list[Action]:
        """flush / end / max_duration / shutdown: end the open turn now (no-op when none is open)."""
        if self.state == TurnPhase.IDLE:
            self.candidate_frames = 0
            return []
        actions = []
        if self.state == TurnPhase.SPEAKING:
            self.last_speech_end = now
            actions.append(Action(ActionKind.SPEECH_END, round(now, 3)))
        actions.append(self._finalize(reason, now))
        return actions

    def _finalize(self, reason: str, now: float) -> Action:
        """Ends the turn: the action carries its bounds, the machine is idle again."""
        action = Action(
            ActionKind.FINALIZE,
            round(now, 3),
            reason=reason,
            probability=self.probability,
            turn_start=self.turn_start,
            speech_end=round(self.last_speech_end, 3),
            checks=tuple(self.checks),
            held=self.held,
        )
        self.reset()
        return action
