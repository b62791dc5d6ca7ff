"""What a client that never reports playback has heard: a real-time playback clock.

The browser page plays agent audio the moment it arrives, back to back, through a ring buffer, and
says nothing back about it. So the server keeps the same clock the page does: audio sent at `t`
starts when the audio before it ends, or at `t` if the page's buffer had already run dry, and ends
`duration` later (expected end = max(now, previous end) + duration). A segment counts as played
only once its expected end has passed; until the last one has, the agent is still talking to the
user, after the turn's `done` too, so the user's speech still barges in and the history keeps only
the part that played.

`PlaybackClock` is that arithmetic, on explicit times. `PlaybackTracker` runs it on the event loop:
it reports each segment as played (the session's `playback_reached`) when its end comes, with one
timer armed for the next end.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable


class PlaybackClock:
    """Expected playback of audio segments sent to a client that plays them in order, in real time."""

    def __init__(self) -> None:
        self._queue: deque[tuple[float, str]] = deque()  # (expected end, segment id), in send order
        self.end = 0.0  # when the last scheduled audio is expected to have played

    def schedule(self, segment_id: str, duration_s: float, now: float) -> float:
        """Audio of `duration_s` was sent at `now`; returns when it is expected to finish playing."""
        self.end = max(now, self.end) + max(0.0, duration_s)
        self._queue.append((self.end, segment_id))
        return self.end

    def played(self, now: float) -> list[str]:
        """The segments whose expected end has passed by `now` (oldest first); each is returned once."""
        out: list[str] = []
        while self._queue and self._queue[0][0] <= now:
            out.append(self._queue.popleft()[1])
        return out

    def next_end(self) -> float | None:
        """The expected end of the oldest segment not yet reported played."""
        return self._queue[0][0] if self._queue else None

    def playing(self, now: float) -> bool:
        return now < self.end

    def clear(self, now: float) -> list[str]:
        """The client dropped its queue (0x0B clear): nothing is playing any more. Returns the
        segments that were still unplayed; they never will be."""
        dropped = [sid for _end, sid in self._queue]
        self._queue.clear()
        self.end = now
        return dropped


class PlaybackTracker:
    """Drives a `PlaybackClock` in real time: `on_played(segment_id)` is called (from the event loop)
    once that segment and all before it are expected to have played. Call `sent()` right after the
    audio went out, `clear()` when the client is told to drop its queue, `close()` at the end."""

    def __init__(self, on_played: Callable[[str], None], now: Callable[[], float] = time.monotonic) -> None:
        self.on_played = on_played
        self.now = now
        self.clock = PlaybackClock()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self.epoch = 0  # bumped by clear(): audio whose send began before a clear was dropped by it

    @property
    def playing(self) -> bool:
        return self.clock.playing(self.now())

    def sent(self, segment_id: str, duration_s: float, epoch: int | None = None) -> float | None:
        """`segment_id` was just sent. Pass the `epoch` read before the send started: if a clear
        went out meanwhile, the client dropped this audio with it, and it is not scheduled."""
        if epoch is not None and epoch != self.epoch:
            return None
        end = self.clock.schedule(segment_id, duration_s, self.now())
        if self._timer is None and not self._closed:
            self._arm()
        return end

    def clear(self) -> None:
        self.epoch += 1
        self._cancel_timer()
        self.clock.clear(self.now())

    def close(self) -> None:
        self._closed = True
        self._cancel_timer()

    def _arm(self) -> None:
        end = self.clock.next_end()
        if end is None:
            return
        self._timer = asyncio.get_running_loop().call_later(max(0.0, end - self.now()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self._closed:
            return
        played = self.clock.played(self.now())
        if played:
            self.on_played(played[-1])  # "up to and including": the newest one covers the rest
        self._arm()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
