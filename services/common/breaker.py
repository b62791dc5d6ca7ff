"""What every inference call goes through: a timeout, GPU out-of-memory mapping, a circuit breaker.

Why: an engine that hangs or fails on every call otherwise turns into a queue of doomed requests,
each holding a session slot until its client gives up. Here:

- a call that takes longer than `timeout_s` fails with `inference_timeout` and its caller's slot
  is freed at once. (A Python thread cannot be killed: a truly stuck engine call keeps its worker
  thread, which is why repeated timeouts open the breaker.)
- `failures` engine failures in a row open the breaker: new calls fail at once with
  `engine_unavailable` and `/ready` answers 503, so a load balancer sends traffic elsewhere.
  After `cooldown_s` the breaker is half-open: one probe call goes through; its success closes
  the breaker, its failure opens it for another cool-down.
- GPU out of memory (torch.cuda.OutOfMemoryError, or CTranslate2's RuntimeError "... out of
  memory") is a capacity problem, not a broken engine: it becomes `gpu_out_of_memory` (503), the
  process goes on, and it does not count towards opening the breaker.
- Errors that are the client's (a `CodedError` the engine raised on purpose, e.g. a bad voice)
  neither count nor are rewritten.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .errors import CodedError

T = TypeVar("T")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
OOM_MARKERS = ("out of memory", "cuda_error_out_of_memory", "cudaerrormemoryallocation")


class EngineUnavailable(CodedError):
    status = 503


def is_gpu_oom(exc: BaseException) -> bool:
    """torch's OutOfMemoryError (also reachable as torch.cuda.OutOfMemoryError), checked by name so
    the ASR, which has no torch, can use this too; or a RuntimeError with CUDA's OOM text, which is
    how CTranslate2 reports it ("CUDA failed with error out of memory")."""
    if any(cls.__name__ == "OutOfMemoryError" for cls in type(exc).__mro__):
        return True
    if isinstance(exc, (RuntimeError, MemoryError)) and not isinstance(exc, CodedError):
        text = str(exc).lower()
        return ("cuda" in text or "gpu" in text or "cublas" in text) and any(m in text for m in OOM_MARKERS)
    return False


def timeout_error(timeout_s: float) -> EngineUnavailable:
    return EngineUnavailable("inference_timeout", f"the engine took longer than {timeout_s:g} s; request failed")


def oom_error() -> EngineUnavailable:
    return EngineUnavailable("gpu_out_of_memory", "the GPU is out of memory; retry later or with less load")


class CircuitBreaker:
    def __init__(
        self, name: str, failures: int = 5, cooldown_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name
        self.threshold = failures
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.consecutive = 0
        self.opened_at: float | None = None
        self.probing = False  # a half-open probe is in flight
        self.probe_at = 0.0
        self.opened_total = 0

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return CLOSED
        if self.clock() - self.opened_at >= self.cooldown_s:
            return HALF_OPEN
        return OPEN

    def unavailable(self) -> EngineUnavailable:
        left = 0.0 if self.opened_at is None else max(0.0, self.cooldown_s - (self.clock() - self.opened_at))
        return EngineUnavailable(
            "engine_unavailable",
            f"the {self.name} engine failed {self.threshold} times in a row; retry in {left:.0f} s",
        )

    def before_call(self) -> None:
        """Raises `engine_unavailable` while open (and, half-open, while the one probe runs)."""
        state = self.state
        # a probe that never reported back (its caller vanished) stops blocking after one cool-down
        probe_live = self.probing and self.clock() - self.probe_at < self.cooldown_s
        if state == OPEN or (state == HALF_OPEN and probe_live):
            raise self.unavailable()
        if state == HALF_OPEN:
            self.probing = True
            self.probe_at = self.clock()

    def success(self) -> None:
        self.consecutive = 0
        self.opened_at = None
        self.probing = False

    def failure(self) -> None:
        self.consecutive += 1
        was_probe = self.probing
        self.probing = False
        if was_probe or self.consecutive >= self.threshold:
            if self.opened_at is None:
                self.opened_total += 1
            self.opened_at = self.clock()

    def release(self) -> None:
        """A call that ended without telling (cancelled, client error): a probe slot is free again."""
        self.probing = False

    def ready(self) -> tuple[bool, str]:
        """For /ready: 503 while open; half-open counts as ready so a probe can arrive."""
        if self.state == OPEN:
            return False, self.unavailable().message
        return True, ""


class EngineGuard:
    """One per engine: `await guard.call(awaitable)` runs one inference under timeout + breaker."""

    def __init__(
        self,
        name: str,
        timeout_s: float = 60.0,
        failures: int = 5,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout_s = timeout_s
        self.breaker = CircuitBreaker(name, failures, cooldown_s, clock)

    @classmethod
    def from_config(cls, name: str, common) -> EngineGuard:
        return cls(name, common.inference_timeout_s, common.breaker_failures, common.breaker_cooldown_s)

    def check(self) -> None:
        self.breaker.before_call()

    def ready(self) -> tuple[bool, str]:
        return self.breaker.ready()

    async def wait(self, awaitable: Awaitable[T]) -> T:
        """The timeout alone (no success/failure accounting): e.g. the wait for a stream's next chunk."""
        if not self.timeout_s:
            return await awaitable
        try:
            return await asyncio.wait_for(awaitable, self.timeout_s)
        except asyncio.TimeoutError:
            raise timeout_error(self.timeout_s) from None

    def failed(self, exc: BaseException) -> BaseException:
        """Accounts an engine exception and returns what the caller should raise instead."""
        if isinstance(exc, CodedError) and exc.code == "inference_timeout":
            self.breaker.failure()
            return exc
        if is_gpu_oom(exc):
            self.breaker.release()
            return oom_error()
        if isinstance(exc, CodedError) or getattr(exc, "code", None) in CLIENT_ENGINE_CODES:
            self.breaker.release()
            return exc
        if isinstance(exc, asyncio.CancelledError):
            self.breaker.release()
            return exc
        self.breaker.failure()
        return exc

    async def call(self, awaitable: Awaitable[T]) -> T:
        """check + timeout + accounting around one engine call."""
        try:
            self.check()
        except BaseException:
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            elif isinstance(awaitable, asyncio.Future):
                awaitable.cancel()
            raise
        try:
            result = await self.wait(awaitable)
        except BaseException as exc:
            raise self.failed(exc) from None
        self.breaker.success()
        return result


# engine errors that describe the request, not a broken engine (services/tts/engines/*)
CLIENT_ENGINE_CODES = frozenset({"bad_voice", "unknown_voice", "text_too_long", "bad_parameter"})
