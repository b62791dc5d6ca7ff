"""The speech queue on its own: TTS answers in any order in, audio out strictly in sentence order,
playback reports turned into what was heard, barge-in forgetting exactly the turn's requests."""

from __future__ import annotations

import numpy as np

from services.orchestrator.speech_queue import SpeechQueue
from services.orchestrator.turns import SentenceKind, Turn
from services.orchestrator.waterfall import Waterfall

RATE = 1000  # 1 sample = 1 ms keeps the durations readable


class Recorder:
    """The transport side: what was handed out, in order."""

    def __init__(self) -> None:
        self.out: list[tuple[str, int, str]] = []  # (segment id, samples, first sample's value)

    async def __call__(self, samples: np.ndarray, rate: int, segment_id: str) -> None:
        assert rate == RATE
        self.out.append((segment_id, len(samples), f"{samples[0]:g}"))


def _audio(n: int, value: float) -> np.ndarray:
    return np.full(n, value, dtype=np.float32)


def _queue(max_unplayed: int = 4096) -> tuple[SpeechQueue, Recorder, Turn]:
    rec = Recorder()
    return SpeechQueue(rec, "sess", max_unplayed=max_unplayed), rec, Turn(1, "hi", Waterfall(1, "agent"))


async def test_later_sentences_wait_for_the_one_ahead_of_them():
    q, rec, turn = _queue()
    s0 = q.add(turn, "One.", SentenceKind.ANSWER)
    s1 = q.add(turn, "Two.", SentenceKind.ANSWER)
    assert (s0.request_id, s1.request_id) == ("sess-1-0", "sess-1-1")
    q.track(turn, s0)
    q.track(turn, s1)
    assert await q.audio(s1.request_id, _audio(100, 2), RATE)  # sentence two's audio arrives first
    assert rec.out == []  # ...and waits
    assert await q.audio(s0.request_id, _audio(200, 1), RATE)
    assert [v for _s, _n, v in rec.out] == ["1"]
    assert await q.complete(s1.request_id)  # two is done, but one is not: still nothing of two
    assert [v for _s, _n, v in rec.out] == ["1"] and turn.emit_index == 0
    assert await q.complete(s0.request_id)
    assert [(sid, n, v) for sid, n, v in rec.out] == [("1.0.0", 200, "1"), ("1.1.1", 100, "2")]
    assert turn.emit_index == 2 and turn.advanced.is_set()
    assert (s0.received_s, s1.received_s) == (0.2, 0.1)
    assert turn.waterfall.has("tts_first_audio") and turn.waterfall.has("first_audio_sent")


async def test_unknown_and_cancelled_requests_are_dropped():
    q, rec, turn = _queue()
    s0 = q.add(turn, "One.", SentenceKind.ANSWER)
    q.track(turn, s0)
    assert not await q.audio("someone-else", _audio(10, 1), RATE)
    assert not await q.complete("someone-else")
    turn.cancelled = True
    assert not await q.audio(s0.request_id, _audio(10, 1), RATE)
    assert rec.out == []


async def test_playback_reports_become_heard_text():
    q, rec, turn = _queue()
    s0 = q.add(turn, "One two three.", SentenceKind.ANSWER)
    s1 = q.add(turn, "Four five six seven.", SentenceKind.ANSWER)
    for s in (s0, s1):
        q.track(turn, s)
    await q.audio(s0.request_id, _audio(500, 1), RATE)
    await q.complete(s0.request_id)
    await q.audio(s1.request_id, _audio(1000, 2), RATE)
    await q.audio(s1.request_id, _audio(1000, 3), RATE)
    await q.complete(s1.request_id)
    segments = [sid for sid, _n, _v in rec.out]
    assert q.unplayed
    q.played("nope")  # an id it never handed out changes nothing
    assert s0.played_s == 0.0
    q.played(segments[1])  # up to and including the first chunk of sentence two
    assert (s0.played_s, s1.played_s) == (0.5, 1.0)
    assert turn.heard_text() == "One two three. Four five"
    q.played(segments[-1])
    assert not q.unplayed and turn.heard_text() == "One two three. Four five six seven."


async def test_cancel_forgets_only_that_turns_requests_and_all_unplayed_audio():
    q, rec, turn = _queue()
    other = Turn(2, "next", Waterfall(2, "agent"))
    a = q.add(turn, "A.", SentenceKind.ANSWER)
    b = q.add(other, "B.", SentenceKind.ANSWER)
    q.track(turn, a)
    q.track(other, b)
    await q.audio(a.request_id, _audio(10, 1), RATE)
    assert q.cancel(turn) == [a.request_id]
    assert not q.unplayed and q.pending_requests() == [b.request_id]
    assert q.cancel(None) == [] and q.pending_requests() == [b.request_id]
    q.clear()
    assert q.pending_requests() == []


async def test_fail_and_skip_let_the_turn_end_without_audio():
    q, rec, turn = _queue()
    s0 = q.add(turn, "One.", SentenceKind.ANSWER)
    s1 = q.add(turn, "Two.", SentenceKind.ANSWER)
    q.track(turn, s0)
    q.track(turn, s1)
    await q.audio(s1.request_id, _audio(10, 2), RATE)  # buffered behind s0
    q.fail(turn)
    assert turn.tts_failed and turn.emit_index == 2 and not s1.pending
    assert q.pending_requests() == [] and rec.out == []
    late = q.add(turn, "Three.", SentenceKind.APOLOGY)
    q.skip(turn, late)
    assert late.synth_done and turn.emit_index == 3


async def test_a_request_that_failed_at_tts_still_releases_the_next_sentence():
    q, rec, turn = _queue()
    s0 = q.add(turn, "One.", SentenceKind.ANSWER)
    s1 = q.add(turn, "Two.", SentenceKind.ANSWER)
    q.track(turn, s0)
    q.track(turn, s1)
    await q.audio(s1.request_id, _audio(10, 2), RATE)
    entry = q.pop(s0.request_id)  # TTS sent an error for sentence one
    assert entry == (turn, s0)
    await q.finish(*entry)
    assert [v for _s, _n, v in rec.out] == ["2"] and turn.emit_index == 1


async def test_unplayed_stays_bounded_for_a_transport_that_never_reports():
    q, rec, turn = _queue(max_unplayed=3)
    s0 = q.add(turn, "Long.", SentenceKind.ANSWER)
    q.track(turn, s0)
    for i in range(5):
        await q.audio(s0.request_id, _audio(100, i + 1), RATE)
    assert len(rec.out) == 5
    assert round(s0.played_s, 3) == 0.2  # the two oldest segments count as played


async def test_audio_waiting_for_an_earlier_sentence_is_bounded_by_the_budget():
    import pytest

    from services.common.budget import Budget, BufferFull

    rec = Recorder()
    q = SpeechQueue(rec, "sess", budget=Budget(max_audio_s=1.0))
    turn = Turn(1, "hi", Waterfall(1, "agent"))
    s0 = q.add(turn, "One.", SentenceKind.ANSWER)
    s1 = q.add(turn, "Two.", SentenceKind.ANSWER)
    q.track(turn, s0)
    q.track(turn, s1)
    assert await q.audio(s0.request_id, _audio(5000, 0.1), RATE)  # next in line: out at once, never held
    assert await q.audio(s1.request_id, _audio(600, 0.2), RATE)  # held: 0.6 s of 1 s
    with pytest.raises(BufferFull) as info:
        await q.audio(s1.request_id, _audio(600, 0.3), RATE)  # 1.2 s would be held
    assert info.value.code == "buffer_full"
    assert [n for _sid, n, _v in rec.out] == [5000]  # what went out stays; the held 0.6 s is kept
    assert len(s1.pending) == 1
