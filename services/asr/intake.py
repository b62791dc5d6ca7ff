"""A session's received audio, waiting for the VAD / turn path: the transport never waits on it.

Why: the session used to process each audio frame inside the transport's receive loop, and that
processing waits on the shared engine (the VAD pool, Smart Turn, and past MAX_PENDING_FINALS
finals the engine itself). uvicorn's WebSocket protocol stops reading the socket after each
message until the app asks for the next one, so a session waiting there for 20 s no longer saw
its client's pongs and was dropped with 1011 "keepalive ping timeout" (issue 9, soak), taking
its pending finals with it. Here `put` only queues the samples and returns; one consumer task
per session processes them in arrival order.

Bounded: past `max_s` seconds of audio waiting, `put` waits for room (the transport then pushes
back on a client that streams much faster than real time, as before). Nothing queued is ever
dropped; flush, clear and end wait for `drained()` first, so they apply in arrival order.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable

import numpy as np


class Intake:
    def __init__(
        self,
        process: Callable[[np.ndarray], Awaitable[None]],
        max_s: float,
        on_error: Callable[[Exception], None],
    ) -> None:
        self.process = process
        self.max_s = max_s
        self.on_error = on_error
        self.items: collections.deque[tuple[np.ndarray, float]] = collections.deque()
        self.held_s = 0.0  # seconds of audio queued or being processed
        self._changed = asyncio.Event()  # something was queued, or the queue drained
        self._busy = False
        self._task: asyncio.Task | None = None

    @property
    def idle(self) -> bool:
        return not self.items and not self._busy

    async def put(self, samples: np.ndarray, seconds: float) -> None:
        while self.held_s + seconds > self.max_s and not self.idle:
            self._changed.clear()
            await self._changed.wait()
        self.items.append((samples, seconds))
        self.held_s += seconds
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        self._changed.set()

    async def _run(self) -> None:
        while self.items:
            samples, seconds = self.items.popleft()
            self._busy = True
            try:
                await self.process(samples)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug: reported, and the session goes on with the next audio
                self.on_error(exc)
            finally:
                self._busy = False
                self.held_s = max(0.0, self.held_s - seconds)
                self._changed.set()

    async def drained(self) -> None:
        """Until every audio received so far went through `process`."""
        while not self.idle:
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._run())
            self._changed.clear()
            await self._changed.wait()

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.items.clear()
        self.held_s = 0.0
        self._changed.set()
