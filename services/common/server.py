"""What every service's app has in common: /health, /ready, /metrics, auth, graceful shutdown,
and the `python -m services.X --host --port` entry point."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from . import logs
from .auth import APIKeyMiddleware
from .config import CommonConfig
from .http_guard import with_header_timeout
from .metrics import metrics_endpoint
from .ratelimit import RateLimiter, RateLimitMiddleware
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

    rate_limiter = RateLimiter(config.rate_limit_per_min, config.rate_limit_burst, keys=config.api_keys)
    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/ready", ready_endpoint),
            Route("/metrics", metrics_endpoint),
            *routes,
        ],
        middleware=[*cors_middleware(config), Middleware(APIKeyMiddleware, keys=config.api_keys, exempt=auth_exempt)]
        + [Middleware(RateLimitMiddleware, limiter=rate_limiter)],
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: internal_error},
    )
    app.state.rate_limiter = rate_limiter  # WebSockets are rate limited at admission (limits.admit)
    if registry is not None:
        app.state.drain = registry.close_all
    for key, value in (state or {}).items():
        setattr(app.state, key, value)
    return app


HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's own 404 / 405 (no such route, wrong method) in the one JSON error shape."""
    code = HTTP_CODES.get(exc.status_code, "http_error")
    return JSONResponse(
        {"error": {"code": code, "message": str(exc.detail), "type": "invalid_request_error"}},
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    """Any exception a route did not turn into a coded answer: the one JSON error shape (see
    limits.error_response), never Starlette's plain-text 500. Starlette re-raises it after this
    answer, so uvicorn logs it, through logs' content-free traceback."""
    return JSONResponse(
        {"error": {"code": "internal", "message": "internal server error", "type": "server_error"}}, status_code=500
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: assume it resolves beyond this machine


def warn_if_exposed(name: str, host: str, config: CommonConfig) -> None:
    """A service reachable from the network with no key is open to anyone who can reach it."""
    if not config.api_keys and not is_loopback(host):
        logs.event(
            log,
            f"{name} listens on {host} beyond loopback with no API_KEYS: anyone who can reach this port can use it",
            level=logging.WARNING,
            host=host,
            port=config.port,
        )


def cors_middleware(config: CommonConfig) -> list[Middleware]:
    """CORS for browsers calling the REST APIs from another origin (CORS_ORIGINS; empty = none).
    Outermost, so preflights need no key and 401/429 answers still carry the CORS headers."""
    if not config.cors_origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Retry-After"],
            max_age=600,
        )
    ]


def main(name: str, make_app: Callable[[], tuple[Starlette, CommonConfig]]) -> None:
    """Entry point for `python -m services.<name>`: config errors exit with the variable named."""
    parser = argparse.ArgumentParser(prog=f"python -m services.{name}")
    parser.add_argument("--host", default=None, help="bind address (default: HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: from env)")
    args = parser.parse_args()
    app, config = make_app()
    logs.setup(config.log_level, config.log_content)
    host = args.host or config.host
    warn_if_exposed(name, host, config)
    uvicorn_config = uvicorn.Config(
        app,
        host=host,
        port=args.port or config.port,
        log_config=None,
        access_log=False,
        # the transport cap sits above the app cap so an oversize frame gets an error event, not a 1009
        ws_max_size=config.max_frame_bytes * 4,
        ws=TolerantWebSocketProtocol,  # invalid UTF-8 text → an error event, not a traceback + 1007
        http=with_header_timeout(config.header_timeout_s),  # uvicorn has no request-head timeout of its own
        timeout_graceful_shutdown=max(1, round(config.drain_timeout_s)),
        ws_ping_interval=20,
        ws_ping_timeout=20,
    )
    uvicorn_config.drain_timeout_s = config.drain_timeout_s
    with contextlib.suppress(KeyboardInterrupt):
        DrainingServer(uvicorn_config).run()
    exit_bounded(grace_s=2.0)


def exit_bounded(grace_s: float) -> None:
    """After the server stopped: worker threads still running (an engine call the cancel token
    has not reached yet, a thread-pool job) would keep the interpreter alive, since Python joins
    non-daemon threads at exit. Give them `grace_s`, then leave anyway."""
    deadline = time.monotonic() + grace_s
    for thread in threading.enumerate():
        if thread is threading.main_thread() or thread.daemon:
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() and not t.daemon and t is not threading.main_thread() for t in threading.enumerate()):
        logs.event(log, "worker threads still busy at exit; leaving without them", level=logging.WARNING)
        logging.shutdown()
        sys.stderr.flush()
        os._exit(0)


class DrainingServer(uvicorn.Server):
    """uvicorn closes every open WebSocket with 1012 *before* the lifespan shutdown runs, so a
    SessionRegistry closed there would find its sockets gone. An app that sets
    `app.state.drain` (an async callable, e.g. `registry.close_all`) gets it awaited first:
    open sessions finish their turn and close with their own code and reason.

    The drain is bounded by DRAIN_TIMEOUT_S; what is left after it is cancelled by uvicorn's
    own `timeout_graceful_shutdown` (set to the same), then `exit_bounded` stops waiting for
    worker threads, so SIGTERM ends the process within a few seconds whatever is in flight."""

    async def shutdown(self, sockets=None) -> None:
        drain = getattr(getattr(self.config.app, "state", None), "drain", None)
        timeout = getattr(self.config, "drain_timeout_s", 5.0)
        if drain is not None:
            with contextlib.suppress(Exception, asyncio.TimeoutError):
                await asyncio.wait_for(drain(), timeout)
        await super().shutdown(sockets)
