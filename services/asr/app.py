"""The ASR service's Starlette app (models load in a thread at start; /ready waits).

`create_app(config)` builds it; `make_app()` reads the environment for `python -m services.asr`
(the factory convention of every service: docs/architecture.md)."""

from __future__ import annotations

import asyncio
import logging
import os

from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from services.common import logs
from services.common.config import CommonConfig
from services.common.limits import SessionLimiter, admit
from services.common.server import SessionRegistry, build_app

from . import config as asr_config
from . import metrics
from .engines import Engines
from .realtime.session import RealtimeSession, refuse_intent
from .rest import make_endpoint
from .session import StreamSession
from .wyoming_server import WyomingASR

log = logging.getLogger("voice.asr")

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # it logs every call's duration at INFO


def make_app(config: asr_config.ASRConfig | None = None) -> tuple[Starlette, CommonConfig]:
    config = config or asr_config.load()
    return create_app(config), config.common


def create_app(config: asr_config.ASRConfig) -> Starlette:
    engines = Engines(config)
    registry = SessionRegistry()
    limiter = SessionLimiter(
        config.common.max_sessions,
        on_change=metrics.active_sessions.set,
        on_reject=metrics.rejected_sessions.inc,
    )
    loading: dict[str, asyncio.Task] = {}
    wyoming = WyomingASR(config, engines, limiter, registry) if config.wyoming_port else None

    async def load_models() -> None:
        try:
            await asyncio.to_thread(engines.load)
        except Exception as exc:
            engines.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("model load failed")

    async def startup() -> None:
        engines.transcriber.start()
        loading["task"] = asyncio.create_task(load_models())
        if wyoming is not None:
            await wyoming.start()  # same model, limiter and registry as the HTTP transports

    async def shutdown() -> None:
        if wyoming is not None:
            await wyoming.stop()
        await registry.close_all(timeout_s=2.0)  # in case the drain did not run (another server)
        await engines.transcriber.stop()
        engines.shutdown()

    async def ready() -> tuple[bool, str]:
        if engines.load_error:
            return False, f"model load failed: {engines.load_error}"
        if not engines.loaded:
            return False, "models loading"
        if registry.closing:
            return False, "shutting down"
        engine_ok, why = engines.transcriber.guard.ready()  # circuit breaker open → 503
        if not engine_ok:
            return False, why
        if limiter.full:
            return False, f"at capacity ({limiter.limit} sessions)"
        return True, "ready"

    async def admitted(ws: WebSocket, serve) -> None:
        """Every ASR WebSocket transport through the one admission path (limits.admit)."""
        if registry.closing:
            unavailable = "server shutting down"
        elif not engines.loaded:
            unavailable = "models still loading; retry shortly"
        else:
            unavailable = None
        await admit(
            ws,
            limiter,
            serve,
            unavailable,
            on_capacity=lambda reason: logs.event(log, "session refused", reason=reason),
        )

    async def stream(ws: WebSocket) -> None:
        async def serve() -> None:
            await ws.accept()
            await StreamSession(ws, config, engines, registry).run()

        await admitted(ws, serve)

    async def realtime(ws: WebSocket) -> None:
        async def serve() -> None:
            await ws.accept()
            if ws.query_params.get("intent") != "transcription":
                await refuse_intent(ws)
                return
            await RealtimeSession(ws, config, engines, registry).run()

        await admitted(ws, serve)

    app = build_app(
        [
            WebSocketRoute("/v1/asr/stream", stream),
            WebSocketRoute("/v1/realtime", realtime),
            Route("/v1/audio/transcriptions", make_endpoint(config, engines, limiter), methods=["POST"]),
        ],
        config.common,
        ready,
        startup=startup,
        shutdown=shutdown,
        state={"asr_config": config, "engines": engines},
        registry=registry,
    )
    return app
