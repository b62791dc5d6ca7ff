"""Keeps one upstream stream (ASR or TTS) connected for the life of an agent session.

A supervisor task connects through the client library, reads events into the session's handler,
and when the service is unreachable or drops, reports it once and reconnects with jittered
exponential backoff until the session closes. So a restarted ASR or TTS service comes back into
running sessions on its own, and nothing blocks while it is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any

from clients.voice import Backoff, StreamClosed
from clients.voice._stream import JsonEventStream
from services.common import logs

from . import metrics

log = logging.getLogger("voice.orchestrator.upstream")


class DownReason(StrEnum):
    """Why an upstream is down (a StrEnum: it becomes part of error codes, e.g. `tts_unauthorized`)."""

    UNAVAILABLE = "unavailable"  # unreachable or dropped: retrying helps
    UNAUTHORIZED = "unauthorized"  # it refused UPSTREAM_API_KEY: retrying will not help


StateHandler = Callable[[bool, str, str], Awaitable[None]]  # (up, message, reason: a DownReason or "")

WS_POLICY_VIOLATION = 1008  # how the services' APIKeyMiddleware refuses a WebSocket with a bad key


def refusal(name: str, exc: BaseException) -> tuple[str, str]:
    """A failed connect → (reason, message). A refused API key is told apart from "unreachable":
    retrying will not help until the key is fixed, and the operator needs to know which setting."""
    if isinstance(exc, StreamClosed) and exc.code == WS_POLICY_VIOLATION:
        why = exc.reason or "invalid or missing API key"
        return DownReason.UNAUTHORIZED, (
            f"{name.upper()} service refused the orchestrator's API key ({why}): "
            f"set UPSTREAM_API_KEY to one of its API_KEYS"
        )
    return DownReason.UNAVAILABLE, f"{name.upper()} service unreachable ({type(exc).__name__}); retrying"


class Upstream:
    def __init__(
        self,
        name: str,
        factory: Callable[[], JsonEventStream],
        on_event: Callable[[Any], Awaitable[None]],
        on_state: StateHandler,
        backoff: Backoff,
        session_id: str = "",
    ) -> None:
        self.name = name
        self.factory = factory
        self.on_event = on_event
        self.on_state = on_state
        self.backoff = backoff
        self.session_id = session_id
        self.stream: JsonEventStream | None = None
        self.first_attempt = asyncio.Event()
        self.down_reason = DownReason.UNAVAILABLE  # why it is down, when it is
        self._task: asyncio.Task | None = None
        self._closed = False

    @property
    def up(self) -> bool:
        return self.stream is not None and self.stream.connected

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"upstream-{self.name}")

    async def _run(self) -> None:
        attempt = 0
        reported_down = ""  # the reason last reported to the session; "" = reported up (or nothing yet)
        while not self._closed:
            stream = self.factory()
            try:
                await stream.connect()
            except asyncio.CancelledError:
                await stream.close()
                raise
            except Exception as exc:  # unreachable, refused, handshake error: all mean "not now"
                await stream.close()
                attempt += 1
                metrics.UPSTREAM_FAILURES.labels(self.name).inc()
                reason, message = refusal(self.name, exc)
                self.down_reason = reason
                if reported_down != reason:  # once per outage, and again if its cause changes
                    reported_down = reason
                    logs.event(log, f"upstream {reason}", level=logging.WARNING, service=self.name,
                               session_id=self.session_id, error=type(exc).__name__)  # fmt: skip
                    await self.on_state(False, message, reason)
                self.first_attempt.set()
                await asyncio.sleep(self.backoff.delay(attempt))
                continue
            attempt = 0
            self.stream = stream
            self.first_attempt.set()
            if reported_down:
                reported_down = ""
                await self.on_state(True, "", "")
            try:
                while True:
                    event = await stream.recv()
                    try:
                        await self.on_event(event)
                    except asyncio.CancelledError:
                        raise
                    except Exception:  # a bug or a gone client must not look like an upstream failure
                        log.exception("handling a %s event failed", self.name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # StreamClosed, or a malformed server message: reconnect either way
                if self._closed:
                    return
                metrics.UPSTREAM_FAILURES.labels(self.name).inc()
                why = "dropped the connection" if isinstance(exc, StreamClosed) else f"sent bad data ({exc})"
                logs.event(log, "upstream lost", level=logging.WARNING, service=self.name,
                           session_id=self.session_id, error=type(exc).__name__)  # fmt: skip
                self.stream = None
                await stream.close()
                if isinstance(exc, StreamClosed) and exc.code == 1000:
                    continue  # a normal close (e.g. the service's idle timeout): reconnect quietly
                reported_down = self.down_reason = DownReason.UNAVAILABLE
                await self.on_state(False, f"{self.name.upper()} service {why}; reconnecting", DownReason.UNAVAILABLE)
            finally:
                if self.stream is stream and self._closed:
                    self.stream = None

    async def wait_first_attempt(self, timeout: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.first_attempt.wait(), timeout)

    async def close(self) -> None:
        self._closed = True
        stream, self.stream = self.stream, None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if stream is not None:
            await stream.close()
