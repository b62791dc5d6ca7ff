"""Reconnect pacing: exponential, jittered, bounded.

Full jitter (a uniform draw between 0 and the exponential ceiling) spreads clients that lost the
same server at the same moment, so a restarted service is not hit by all of them at once; the cap
keeps a long outage from turning into minutes between tries; `max_attempts` lets a caller give up.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass
class Backoff:
    base_s: float = 0.2
    factor: float = 2.0
    max_s: float = 5.0
    jitter: float = 1.0  # 0 = no jitter (deterministic ceiling), 1 = full jitter
    max_attempts: int | None = 6  # None = forever
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def ceiling(self, attempt: int) -> float:
        """The largest delay before retry number `attempt` (1-based)."""
        return min(self.max_s, self.base_s * self.factor ** max(0, attempt - 1))

    def delay(self, attempt: int) -> float:
        top = self.ceiling(attempt)
        return top - self.jitter * top * self.rng.random()

    def gives_up_after(self, attempt: int) -> bool:
        return self.max_attempts is not None and attempt >= self.max_attempts


class RetriesExhausted(ConnectionError):
    """Every attempt failed; `__cause__` is the last error."""


async def retry(
    attempt_fn: Callable[[], Awaitable[T]],
    backoff: Backoff,
    retry_on: tuple[type[BaseException], ...] = (OSError,),
    on_retry: Callable[[int, float, BaseException], None] | None = None,
) -> T:
    """Runs `attempt_fn` until it succeeds, sleeping `backoff.delay(n)` between failures."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await attempt_fn()
        except retry_on as exc:
            if backoff.gives_up_after(attempt):
                raise RetriesExhausted(f"gave up after {attempt} attempts: {exc}") from exc
            wait = backoff.delay(attempt)
            if on_retry:
                on_retry(attempt, wait, exc)
            await asyncio.sleep(wait)
