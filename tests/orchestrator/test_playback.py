"""The browser transport's playback clock: audio plays back to back in real time from when it is
sent, and a segment counts as played only once its expected end has passed."""

from __future__ import annotations

import asyncio
import time

from services.orchestrator.playback import PlaybackClock, PlaybackTracker

from .conftest import eventually


def test_clock_plays_segments_back_to_back_from_when_they_are_sent():
    clock = PlaybackClock()
    assert clock.schedule("a", 1.0, now=10.0) == 11.0
    assert clock.schedule("b", 0.5, now=10.2) == 11.5, "queued behind a, not from its own send time"
    assert clock.next_end() == 11.0
    assert clock.played(10.99) == [] and clock.playing(10.99)
    assert clock.played(11.0) == ["a"]
    assert clock.played(11.2) == [], "each segment is reported once"
    assert clock.played(11.6) == ["b"] and not clock.playing(11.6) and clock.next_end() is None
    # the client's buffer ran dry: new audio starts the moment it arrives
    assert clock.schedule("c", 1.0, now=20.0) == 21.0
    assert clock.schedule("d", 1.0, now=20.1) == 22.0
    assert clock.played(30.0) == ["c", "d"]


def test_clear_drops_the_queue_and_restarts_the_clock():
    clock = PlaybackClock()
    clock.schedule("a", 2.0, now=0.0)
    clock.schedule("b", 2.0, now=0.1)
    assert clock.played(2.5) == ["a"]
    assert clock.clear(2.5) == ["b"] and not clock.playing(2.5)
    assert clock.played(100.0) == [], "cleared audio never counts as played"
    assert clock.schedule("c", 0.25, now=3.0) == 3.25


async def test_tracker_reports_segments_in_order_never_before_their_end():
    reported: list[tuple[str, float]] = []
    tracker = PlaybackTracker(lambda sid: reported.append((sid, time.monotonic())))
    ends = {sid: tracker.sent(sid, 0.05) for sid in ("1", "2", "3")}
    assert ends["3"] - ends["1"] >= 0.1 - 1e-9 and tracker.playing
    await eventually(lambda: bool(reported) and reported[-1][0] == "3", 5)
    ids = [sid for sid, _at in reported]
    assert ids == sorted(set(ids)), "in playback order, each once (late timers may cover several)"
    assert all(at >= ends[sid] for sid, at in reported), "never reported before its expected end"
    assert not tracker.playing

    tracker.sent("4", 0.05)
    epoch = tracker.epoch  # "5" starts sending...
    tracker.clear()  # ...a barge-in clears meanwhile: the page drops its queue, "5" included
    assert not tracker.playing
    assert tracker.sent("5", 0.05, epoch) is None and not tracker.playing
    tracker.sent("6", 0.05)
    tracker.close()  # the connection ended
    await asyncio.sleep(0.2)
    assert reported[-1][0] == "3", "nothing cleared or sent after close is reported"
