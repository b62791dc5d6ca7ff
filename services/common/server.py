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
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from . import logs
from .auth import APIKeyMiddleware
from .client_addr import ClientAddressMiddleware, TrustedProxies
from .config import CommonConfig
from .http_guard import with_header_timeout
from .metrics import metrics_endpoint
from .ratelimit import RateLimiter, RateLimitMiddleware
from .ws_endpoint import TolerantWebSocketProtocol

log = logging.getLogger("voice.server")

# how a process ends (docs/reliability.md "Shutdown"): 0 after a drain that finished in time;
# EXIT_DRAIN_CUT (75, EX_TEMPFAIL: the work was cut, its clients retry) when the deadline cut
# sessions, requests or worker threads; 3 when the server never started (as `uvicorn` itself)
EXIT_CLEAN = 0
EXIT_STARTUP_FAILED = 3
EXIT_DRAIN_CUT = 75
CUT_GRACE_S = 0.5  # after the deadline: for aborted connections' tasks to end, then for cancelled ones

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

    async def close_all(self, timeout_s: float = 8.0) -> int:
        """Closes every open session, waiting at most `timeout_s`; returns how many did not close in
        time. Those are cancelled and logged one WARNING line each (session id and code only):
        a drain that has to cut is an operator's event, not a traceback."""
        self.closing = True
        if not self._closers:
            return 0
        tasks = {asyncio.ensure_future(closer()): session_id for session_id, closer in self._closers.items()}
        for task in tasks:
            task.add_done_callback(_consume)
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
            self._closers.pop(tasks[task], None)  # its connection is cut with the others (DrainingServer)
            logs.event(log, "session cut at shutdown", logging.WARNING, session_id=tasks[task], code="drain_timeout")
        if pending:
            await asyncio.wait(pending, timeout=CUT_GRACE_S)
        return len(pending)


def _consume(task: asyncio.Future) -> None:
    """Retrieves a closer's outcome so asyncio never logs 'exception was never retrieved' (with a
    traceback, at ERROR) for a close that failed or was cancelled at shutdown."""
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        logs.event(log, "session close failed at shutdown", error=logs.safe_exc(exc))


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
        # the client address first: CORS, auth, the rate limit and every log line after it see the same one
        middleware=[
            Middleware(ClientAddressMiddleware, trusted=TrustedProxies(config.trusted_proxies)),
            *cors_middleware(config),
            Middleware(APIKeyMiddleware, keys=config.api_keys, exempt=auth_exempt),
            Middleware(RateLimitMiddleware, limiter=rate_limiter),
        ],
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
        # the client address is services.common.client_addr's job (TRUSTED_PROXIES), not uvicorn's
        proxy_headers=False,
        ws_ping_interval=20,
        ws_ping_timeout=20,
    )
    server = DrainingServer(uvicorn_config, drain_timeout_s=config.drain_timeout_s)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    exit_bounded(grace_s=2.0)
    sys.exit(server.exit_code())


def exit_bounded(grace_s: float) -> None:
    """After the server stopped: worker threads still running (an engine call the cancel token
    has not reached yet, a thread-pool job) would keep the interpreter alive, since Python joins
    non-daemon threads at exit. Give them `grace_s`, then leave anyway, with EXIT_DRAIN_CUT (their
    work is lost)."""
    deadline = time.monotonic() + grace_s
    for thread in threading.enumerate():
        if thread is threading.main_thread() or thread.daemon:
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() and not t.daemon and t is not threading.main_thread() for t in threading.enumerate()):
        logs.event(log, "worker threads still busy at exit; leaving without them", level=logging.WARNING)
        logging.shutdown()
        sys.stderr.flush()
        os._exit(EXIT_DRAIN_CUT)


class DrainingServer(uvicorn.Server):
    """uvicorn's server with our shutdown, in this order (docs/reliability.md "Shutdown"):

    1. the app's `state.drain` (an async callable taking a timeout, `SessionRegistry.close_all`)
       gets DRAIN_TIMEOUT_S: open sessions finish their turn and close with their own code and
       reason (uvicorn's own shutdown would close every WebSocket with 1012 first);
    2. the listeners close and every connection is asked to finish (uvicorn's
       `connection.shutdown()`), for `timeout_graceful_shutdown` (the same again);
    3. what is left is cut: each connection is aborted and logged as one WARNING line (code
       `drain_timeout`, no path, no text), and a request task still running CUT_GRACE_S later is
       cancelled quietly. uvicorn's own cut logs ERROR "Cancel N running task(s)" and, for each
       task, a CancelledError traceback ("Exception in ASGI application"): operators alert on
       ERROR, and a graceful drain is not an error;
    4. the lifespan shutdown, then `exit_bounded` stops waiting for worker threads.

    uvicorn re-raises the signal it caught once serving ends, so a drained process died of its
    SIGTERM (exit -15). Here the signal is kept (`signals`) and `exit_code()` says how it went:
    0 for a drain that finished in time, EXIT_DRAIN_CUT when anything had to be cut.
    Written against uvicorn 0.54 (pinned): `shutdown` replaces uvicorn's, `_captured_signals` is its."""

    def __init__(self, config: uvicorn.Config, drain_timeout_s: float = 5.0) -> None:
        super().__init__(config)
        self.app = config.app
        config.app = _QuietCancel(config.app, self)
        self.drain_timeout_s = drain_timeout_s
        self.cut = 0  # sessions and connections the deadline cut
        self.cutting = False
        self.signals: list[int] = []

    def exit_code(self) -> int:
        if not self.started:
            return EXIT_STARTUP_FAILED
        return EXIT_DRAIN_CUT if self.cut or self.force_exit else EXIT_CLEAN

    @contextlib.contextmanager
    def capture_signals(self):
        with super().capture_signals():
            try:
                yield
            finally:  # runs before uvicorn's re-raise, which then finds nothing to raise
                self.signals = list(self._captured_signals)
                self._captured_signals.clear()

    async def shutdown(self, sockets=None) -> None:
        drain = getattr(getattr(self.app, "state", None), "drain", None)
        if drain is not None and not self.force_exit:
            try:
                self.cut += int(await drain(self.drain_timeout_s) or 0)
            except Exception as exc:  # a bug in a closer: the connections are cut below anyway
                logs.event(log, "session drain failed", logging.WARNING, error=logs.safe_exc(exc))
        logs.event(log, "shutting down", connections=len(self.server_state.connections))
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        await asyncio.sleep(0.1)
        if not await self._settled(self.config.timeout_graceful_shutdown):
            await self._cut()
        for server in self.servers:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), CUT_GRACE_S)
        if not self.force_exit:
            await self.lifespan.shutdown()

    async def _settled(self, timeout_s: float) -> bool:
        """Waits until no connection and no request task is left; False at the deadline (or on a
        second Ctrl-C, uvicorn's force exit)."""
        deadline = time.monotonic() + timeout_s
        while self.server_state.connections or self.server_state.tasks:
            if self.force_exit or time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.1)
        return True

    async def _cut(self) -> None:
        connections = list(self.server_state.connections)
        self.cut += len(connections)
        for connection in connections:
            kind = "websocket" if isinstance(connection, WebSocketsSansIOProtocol) else "http"
            logs.event(log, "request cut at shutdown", logging.WARNING, code="drain_timeout", kind=kind)
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()  # the app sees a client that went away (http.disconnect / 1006)
        if not await self._settled(CUT_GRACE_S):
            left = list(self.server_state.tasks)
            if left:
                self.cutting = True
                logs.event(log, "request tasks cancelled at shutdown", code="drain_timeout", count=len(left))
                for task in left:
                    task.cancel()
                await asyncio.wait(left, timeout=CUT_GRACE_S)


class _QuietCancel:
    """The outermost ASGI layer under DrainingServer: a request task cancelled by the shutdown's
    cut (its connection already aborted) ends as if its client had gone, instead of reaching
    uvicorn as a CancelledError it logs with a traceback at ERROR. Any other cancellation
    propagates."""

    def __init__(self, app: Any, server: DrainingServer) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope, receive, send) -> None:
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            if not self.server.cutting:
                raise
