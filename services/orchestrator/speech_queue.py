"""The agent's speech, sentence by sentence: TTS audio in, audio for the transport out, in order.

TTS answers each sentence as its own request, and the answers of several requests may interleave
or arrive before the sentence ahead of them is finished. The queue hands audio to the transport
strictly in sentence order: audio of the sentence at `turn.emit_index` goes out at once, later
sentences' audio waits in `Sentence.pending` until every sentence before it is complete.

Every chunk handed out gets a segment id (`"<turn>.<sentence>.<n>"`, unique, in playback order)
and waits in the *unplayed* list until the transport reports it played (`played(segment_id)`);
that is what `Turn.heard_text()` later reads. The queue knows nothing about sockets, TTS clients
or Claude: `emit` is the one way out, so it is tested directly (tests/orchestrator/test_speech_queue.py).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable

import numpy as np

from services.common.budget import Budget

from .turns import Sentence, SentenceKind, Turn

MAX_UNPLAYED = 4096  # audio segments awaiting a playback report; older ones count as played

Emit = Callable[[np.ndarray, int, str], Awaitable[None]]  # (samples, sample_rate, segment_id)


class SpeechQueue:
    def __init__(
        self, emit: Emit, request_prefix: str, max_unplayed: int = MAX_UNPLAYED, budget: Budget | None = None
    ) -> None:
        self._emit_audio = emit
        self.request_prefix = request_prefix
        self.max_unplayed = max_unplayed
        self.budget = budget  # MAX_BUFFERED_AUDIO_SECS: audio held for sentences not yet next in line
        self._requests: dict[str, tuple[Turn, Sentence]] = {}  # TTS requests not yet complete
        self._unplayed: OrderedDict[str, tuple[Turn, Sentence, float]] = OrderedDict()

    # ------------------------------------------------------------------ state
    @property
    def unplayed(self) -> bool:
        """Audio was handed to the transport and not yet reported played."""
        return bool(self._unplayed)

    def pending_requests(self, turn: Turn | None = None) -> list[str]:
        return [rid for rid, (t, _s) in self._requests.items() if turn is None or t is turn]

    # ------------------------------------------------------------------ sentences
    def add(self, turn: Turn, text: str, kind: SentenceKind) -> Sentence:
        """A new sentence at the end of the turn, with the TTS request id it will be asked under."""
        request_id = f"{self.request_prefix}-{turn.id}-{len(turn.sentences)}"
        sentence = Sentence(len(turn.sentences), text, request_id, kind)
        turn.sentences.append(sentence)
        return sentence

    def track(self, turn: Turn, sentence: Sentence) -> None:
        """The sentence was (about to be) sent to TTS: its audio is expected under its request id."""
        self._requests[sentence.request_id] = (turn, sentence)

    def skip(self, turn: Turn, sentence: Sentence) -> None:
        """A sentence that will get no audio (TTS already failed this turn): it counts as done."""
        sentence.synth_done = True
        self.advance(turn)

    def fail(self, turn: Turn) -> None:
        """No more audio this turn: every pending sentence counts as done so the turn can end."""
        turn.tts_failed = True
        for sentence in turn.sentences:
            sentence.synth_done = True
            sentence.pending.clear()
            self._requests.pop(sentence.request_id, None)
        turn.emit_index = len(turn.sentences)
        turn.advanced.set()

    # ------------------------------------------------------------------ TTS answers
    async def audio(self, request_id: str, samples: np.ndarray, sample_rate: int) -> bool:
        """A chunk of a request's audio. False (and dropped) when the request is unknown: a
        cancelled request's tail, or someone else's. Raises BufferFull when audio that must wait
        for an earlier sentence would pass the connection's budget."""
        entry = self._requests.get(request_id)
        if entry is None:
            return False
        turn, sentence = entry
        if turn.cancelled:
            return False
        if self.budget is not None and sentence.index != turn.emit_index:
            held = sum(len(s) / r for later in turn.sentences for s, r in later.pending)
            self.budget.audio(held, len(samples) / sample_rate, "agent audio waiting to play")  # BufferFull
        turn.waterfall.mark("tts_first_audio")
        sentence.received_s += len(samples) / sample_rate
        if sentence.index == turn.emit_index:
            await self._emit(turn, sentence, samples, sample_rate)
        else:
            sentence.pending.append((samples, sample_rate))
        return True

    def pop(self, request_id: str) -> tuple[Turn, Sentence] | None:
        """Stop expecting audio for a request (it completed or failed); its entry, if it had one."""
        return self._requests.pop(request_id, None)

    async def finish(self, turn: Turn, sentence: Sentence) -> None:
        """A sentence's synthesis ended: hand over whatever is now next in line."""
        sentence.synth_done = True
        await self.flush_ready(turn)

    async def complete(self, request_id: str) -> bool:
        """TTS says the request is complete. False when it was not (or no longer) expected."""
        entry = self.pop(request_id)
        if entry is None:
            return False
        await self.finish(*entry)
        return True

    async def flush_ready(self, turn: Turn) -> None:
        """Sentences play in order: when one completes, hand over the audio the next ones buffered."""
        while not turn.cancelled and turn.emit_index < len(turn.sentences):
            current = turn.sentences[turn.emit_index]
            while current.pending and not turn.cancelled:
                samples, rate = current.pending.pop(0)
                await self._emit(turn, current, samples, rate)
            if not current.synth_done:
                break
            self.advance(turn)

    def advance(self, turn: Turn) -> None:
        """Move `emit_index` past every finished, fully handed-over sentence; wake the turn."""
        while (
            turn.emit_index < len(turn.sentences)
            and turn.sentences[turn.emit_index].synth_done
            and not turn.sentences[turn.emit_index].pending
        ):
            turn.emit_index += 1
        turn.advanced.set()

    async def _emit(self, turn: Turn, sentence: Sentence, samples: np.ndarray, rate: int) -> None:
        segment_id = f"{turn.id}.{sentence.index}.{next(turn.chunks)}"
        self._unplayed[segment_id] = (turn, sentence, len(samples) / rate)
        if len(self._unplayed) > self.max_unplayed:  # a transport that never reports playback: stay bounded
            _sid, (_t, old, duration) = self._unplayed.popitem(last=False)
            old.played_s += duration
        await self._emit_audio(samples, rate, segment_id)
        turn.waterfall.mark("first_audio_sent")

    # ------------------------------------------------------------------ playback, barge-in
    def played(self, segment_id: str) -> None:
        """Everything up to and including `segment_id` was played to the user."""
        if segment_id not in self._unplayed:
            return
        while self._unplayed:
            sid, (_turn, sentence, duration) = self._unplayed.popitem(last=False)
            sentence.played_s += duration
            if sid == segment_id:
                break

    def cancel(self, turn: Turn | None) -> list[str]:
        """Barge-in: forget the turn's outstanding requests (returned, to cancel at TTS) and all
        unplayed audio: the transport is told to drop it, so it never plays."""
        cancelled = self.pending_requests(turn) if turn is not None else []
        for rid in cancelled:
            self._requests.pop(rid, None)
        self._unplayed.clear()
        return cancelled

    def clear(self) -> None:
        self._requests.clear()
        self._unplayed.clear()
