"""One session's end-of-turn decisions: Smart Turn, the transcript signal, the speculative final.

At each `check_turn` of a pause (stop_secs, then each re-check point; services/asr/turn_taking.py)
the final's transcription is already under way ("speculative"): if the answer is "complete",
the final costs max(Smart Turn, Whisper), not their sum. One speculative transcription serves
the whole pause — the audio after the last speech is silence, which adds no words — so the
re-checks, a text hold and a silence timeout reuse it instead of decoding the same speech again.
Speech resuming drops it (cancelled while queued: never runs).

It may start sooner than stop_secs (the session core calls `speculate`, ASR_SPECULATE_SECS):
after a few frames of silence, while the engine is idle, so that when the turn ends (vad at
stop_secs, or Smart Turn's "complete") the final is already decoded or nearly: the final then
costs about stop_secs after the speech, not stop_secs + one Whisper call. Only an idle engine takes this guess, so under
load it costs nobody a slot; a guess that speech resumes after is cancelled, or its result is
thrown away (a running CTranslate2 call cannot be interrupted).

Smart Turn's first answer is guessed the same way (`speculate_turn`, started together with the
early final): on the turn so far padded with digital silence to the exact length the audio will
have at the first check. At that check, when nothing but silence came after what the guess heard
(the same `audible_after` rule), the guess is the answer; on digital silence it is bit for bit
the answer the check would compute, so the same audio still gives the same events. Otherwise
the check runs Smart Turn on the real audio. Without it, Smart Turn ran at the check while the
early final still held both cores, and its 30-80 ms were added to every final.

The transcript signal: when Smart Turn says "complete" and a text hold is still possible, the
decision waits for the speculative transcript (it is needed for the final anyway) and a turn
ending on "to", "the", "and", … is held (TurnTaker.turn_probability).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import metrics
from .config import ASRConfig
from .engines import Engines
from .turn_taking import Action, Endpointing, TurnTaker


def endpointing(config: ASRConfig) -> Endpointing:
    return Endpointing(
        recheck_secs=tuple(config.turn_recheck_secs),
        decay=config.turn_threshold_decay,
        continuation_wait_s=config.continuation_wait_s,
        text_complete_s=config.text_complete_s,
        question_complete_s=config.question_complete_s,
    )


TAIL_FRAME = 160  # 10 ms
TAIL_LEVEL = 0.005  # -46 dB below the turn's speech level ...
NOISE_MARGIN = 3.0  # ... and ~10 dB above its noise floor: the least a sound after the guess must be


def audible_after(audio: np.ndarray, heard: int) -> bool:
    """Is there sound in `audio` after its first `heard` samples? Silero calls the quiet end of a
    word (the "ft" of "left", a stop's release) silence a frame or two before it ends, so a final
    guessed that early can miss it ("before he left" → "before he loo"; that tail measured -34 dB
    below the sentence). Sound = a 10 ms frame after `heard` louder than both TAIL_LEVEL × the
    turn's speech level (its 95th-percentile frame) and NOISE_MARGIN × its noise floor (its
    10th-percentile frame: the pad and the gaps between words), so a room's steady noise after
    the speech does not count, the tail of a word does."""
    if len(audio) - heard < TAIL_FRAME or heard < TAIL_FRAME:
        return False
    levels = frame_levels(audio)
    split = heard // TAIL_FRAME
    speech, floor = (float(x) for x in np.percentile(levels[:split], (95, 10)))
    return bool(speech > 0 and levels[split:].max() > max(TAIL_LEVEL * speech, NOISE_MARGIN * floor))


def frame_levels(audio: np.ndarray) -> np.ndarray:
    frames = audio[: len(audio) // TAIL_FRAME * TAIL_FRAME].reshape(-1, TAIL_FRAME)
    return np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))


async def settled(task: asyncio.Task) -> Any:
    """A guess's result (a transcription, a Smart Turn answer), or None when it was cancelled or
    failed (a final reports the failure). Shielded: the caller being cancelled does not cancel it."""
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if task.cancelled():
            return None
        raise  # the caller itself is being cancelled
    except Exception:
        return None


@dataclass
class Guess:
    """Work started on the turn so far before the turn ends: the task, the pause it belongs to
    (turn start, last speech), its audio's length and how many of those samples are real (the
    rest: zeros)."""

    task: asyncio.Task
    key: tuple
    length: int
    heard: int

    def cancel(self, counter: Any, outcome: str = "dropped") -> None:
        if not self.task.done():
            self.task.cancel()
        counter.labels(outcome).inc()


class Endpointer:
    def __init__(
        self,
        engines: Engines,
        turns: TurnTaker,
        start_final: Callable[[np.ndarray], asyncio.Task],
        start_turn: Callable[[np.ndarray], asyncio.Task],
    ) -> None:
        self.engines = engines
        self.turns = turns
        self.start_final = start_final  # the session's final transcription of `audio`, as a task
        self.start_turn = start_turn  # Smart Turn on `audio`, as a task of the session
        self._final: Guess | None = None  # the final's transcription
        self._turn: Guess | None = None  # Smart Turn's answer at the first check

    def _pause(self) -> tuple:
        return (self.turns.turn_start, round(self.turns.last_speech_end, 3))

    def _holds(self, guess: Guess | None) -> bool:
        """Is `guess` about the speech so far (same start, same last speech), and not cancelled?"""
        return guess is not None and guess.key == self._pause() and not guess.task.cancelled()

    def speculate(self, audio: np.ndarray, heard: int | None = None) -> asyncio.Task:
        """The final's transcription of the speech so far: the one under way, or a new one. `heard`:
        how many samples of `audio` are real (the core pads an early guess with digital silence)."""
        if not self.current():
            self._drop_final()
            task = self.start_final(audio)
            self._final = Guess(task, self._pause(), len(audio), len(audio) if heard is None else heard)
            metrics.speculative.labels("started").inc()
        assert self._final is not None
        return self._final.task

    def speculate_turn(self, audio: np.ndarray, heard: int) -> None:
        """Smart Turn on `audio`: the turn so far padded with digital silence to the length it will
        have at the first check (its first `heard` samples are real)."""
        if self._holds(self._turn):
            return
        self._drop_turn()
        self._turn = Guess(self.start_turn(audio), self._pause(), len(audio), heard)
        metrics.speculative_turns.labels("started").inc()

    def current(self) -> bool:
        """Is a speculative transcription of the speech so far (same start, same last speech) under way?"""
        return self._holds(self._final)

    def drop_stale(self) -> None:
        """Speech came back since the last guess (its last speech moved): that guess is stale."""
        if self._final is not None and self._final.key != self._pause():
            self._drop_final()
        if self._turn is not None and self._turn.key != self._pause():
            self._drop_turn()

    async def _text(self, task: asyncio.Task) -> str | None:
        result = await settled(task)
        return None if result is None else result.text

    async def _probability(self, audio: np.ndarray) -> float:
        """Smart Turn's answer on `audio`: the guess's, when it was asked about this very audio
        (same pause, same length, nothing audible after what it heard), else a new decision."""
        guess, self._turn = self._turn, None
        if guess is not None:
            if guess.key == self._pause() and guess.length == len(audio) and not audible_after(audio, guess.heard):
                answer = await settled(guess.task)
                if answer is not None:
                    metrics.speculative_turns.labels("used").inc()
                    return answer
            guess.cancel(metrics.speculative_turns, "redone" if guess.key == self._pause() else "dropped")
        return await self.engines.turn_probability(audio)

    async def check(self, audio: np.ndarray, now: float) -> list[Action]:
        """Smart Turn (and, when it matters, the transcript) on the turn so far → the TurnTaker's actions."""
        task = self.speculate(audio)
        try:
            prob = await self._probability(audio)
            text = None
            if self.turns.wants_text(prob):
                text = await self._text(task)
            return self.turns.turn_probability(prob, now, text)
        except BaseException:
            self.drop()
            raise

    def take(self, action: Action, audio: np.ndarray) -> asyncio.Task | None:
        """The speculative transcription for the turn `action` finalizes (whose audio is `audio`),
        when it covers the same speech and nothing but silence came after what it heard."""
        self._drop_turn()
        guess, self._final = self._final, None
        if guess is None:
            return None
        if guess.key == (action.turn_start, action.speech_end) and not guess.task.cancelled():
            if not audible_after(audio, guess.heard):
                metrics.speculative.labels("used").inc()
                return guess.task
            guess.cancel(metrics.speculative, "redone")  # the guess missed a word's quiet tail
            return None
        guess.cancel(metrics.speculative)
        return None

    def drop(self) -> None:
        """Speech resumed, or the turn was cleared: the guesses are of no use."""
        self._drop_final()
        self._drop_turn()

    def _drop_final(self) -> None:
        if self._final is not None:
            self._final.cancel(metrics.speculative)
        self._final = None

    def _drop_turn(self) -> None:
        if self._turn is not None:
            self._turn.cancel(metrics.speculative_turns)
        self._turn = None
