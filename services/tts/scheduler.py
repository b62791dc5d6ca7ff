"""At most TTS_MAX_CONCURRENT syntheses at once across all sessions; the rest wait in FIFO order.

A slot is taken per text piece, not per request, so one long text cannot hold the engine while
other sessions' first sentences wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from . import metrics


class Scheduler:
    def __init__(self, max_concurrent: int) -> None:
        self.max_concurrent = max_concurrent
        self._slots = asyncio.Semaphore(max_concurrent)
        self.waiting = 0
        self.active = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        self.waiting += 1
        metrics.QUEUE_DEPTH.set(self.waiting)
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
            metrics.QUEUE_DEPTH.set(self.waiting)
        self.active += 1
        metrics.ACTIVE_SYNTHESES.set(self.active)
        try:
            yield
        finally:
            self.active -= 1
            metrics.ACTIVE_SYNTHESES.set(self.active)
            self._slots.release()
