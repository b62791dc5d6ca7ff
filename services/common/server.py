"""What every service's app has in common: /health, /ready, /metrics, auth, graceful shutdown,
and the `python -m services.X --host --port` entry point."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from . import logs
from .auth import APIKeyMiddleware
from .config import CommonConfig
from .metrics import metrics_endpoint
from .ws_endpoint import TolerantWebSocketProtocol

log = logging.getLogger("voice.server")

ReadyCheck = Callable[[], Awaitable[tuple[bool, str]]]


class SessionRegistry:
    """Open sessions, so shutdown can close them cleanly (close code 1001, 'going away')."""

    def __init__(self) -> None:
        self._closers: dict[str, Callable[[], Awaitable[None]]] = {}
        self.closing = False

    def add(self, session_id: str, closer: Callable[[], Awaitable[None]]) -> None:
        self._closers[session_id] = closer

    def remove(self, session_id: str) -> None:
        self._closers.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._closers)

    async def close_all(self, timeout_s: float = 8.0) -> None:
        self.closing = True
        closers = list(self._closers.values())
        if closers:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(c() for c in closers), return_exceptions=True), timeout_s)


def build_app(
    routes: Sequence[BaseRoute],
    config: CommonConfig,
    ready: ReadyCheck,
    startup: Callable[[], Awaitable[None]] | None = None,
    shutdown: Callable[[], Awaitable[None]] | None = None,
    auth_exempt: Sequence[str] = ("/health",),
    state: dict[str, Any] | None = None,
    registry: SessionRegistry | None = None,
    ready_info: Callable[[], dict[str, Any]] | None = None,
) -> Starlette:
    """`registry`: the service's open sessions, drained on SIGTERM before uvicorn drops the
    sockets (see DrainingServer), so each session ends with its own close code and reason.
    `ready_info`: fields added to every /ready answer (which model runs, for operators and pages)."""

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def ready_endpoint(request: Request) -> JSONResponse:
        ok, reason = await ready()
        info = ready_info() if ready_info else {}
        if ok:
            return JSONResponse({"status": "ready", **info})
        return JSONResponse({"status": "not_ready", "reason": reason, **info}, status_code=503)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        if startup:
            await startup()
        yield
        if shutdown:
            await shutdown()

    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/ready", ready_endpoint),
            Route("/metrics", metrics_endpoint),
            *routes,
        ],
        middleware=[Middleware(APIKeyMiddleware, keys=config.api_keys, exempt=auth_exempt)],
        lifespan=lifespan,
    )
    if registry is not None:
        app.state.drain = registry.close_all
    for key, value in (state or {}).items():
        setattr(app.state, key, value)
    return app


def main(name: str, make_app: Callable[[], tuple[Starlette, CommonConfig]]) -> None:
    """Entry point for `python -m services.<name>`: config errors exit with the variable named."""
    parser = argparse.ArgumentParser(prog=f"python -m services.{name}")
    parser.add_argument("--host", default=None, help="bind address (default: HOST or 0.0.0.0)")
    parser.add_argument("--port", type=int, default=None, help="port (default: from env)")
    args = parser.parse_args()
    app, config = make_app()
    logs.setup(config.log_level, config.log_content)
    uvicorn_config = uvicorn.Config(
        app,
        host=args.host or config.host,
        port=args.port or config.port,
        log_config=None,
        access_log=False,
        # the transport cap sits above the app cap so an oversize frame gets an error event, not a 1009
        ws_max_size=config.max_frame_bytes * 4,
        ws=TolerantWebSocketProtocol,  # invalid UTF-8 text → an error event, not a traceback + 1007
        timeout_graceful_shutdown=10,
        ws_ping_interval=20,
        ws_ping_timeout=20,
    )
    with contextlib.suppress(KeyboardInterrupt):
        DrainingServer(uvicorn_config).run()


class DrainingServer(uvicorn.Server):
    """uvicorn closes every open WebSocket with 1012 *before* the lifespan shutdown runs, so a
    SessionRegistry closed there would find its sockets gone. An app that sets
    `app.state.drain` (an async callable, e.g. `registry.close_all`) gets it awaited first:
    open sessions finish their turn and close with their own code and reason."""

    async def shutdown(self, sockets=None) -> None:
        drain = getattr(getattr(self.config.app, "state", None), "drain", None)
        if drain is not None:
            with contextlib.suppress(Exception):
                await drain()
        await super().shutdown(sockets)
