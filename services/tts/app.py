"""The TTS Starlette app: routes, session limits, model loading in the background (/ready 503
until the engine is loaded), graceful shutdown."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from services.common.config import CommonConfig
from services.common.limits import SessionLimiter, admit
from services.common.server import SessionRegistry, build_app

from . import config as tts_config
from . import metrics
from .rest import make_routes
from .runtime import TTSRuntime
from .session import TTSSession
from .wyoming_server import WyomingTTS

# library chatter (download bars, tokenizer fork warnings) stays out of the JSON logs
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")


def create_app(cfg: tts_config.TTSConfig) -> Starlette:
    runtime = TTSRuntime(cfg)
    registry = SessionRegistry()
    limiter = SessionLimiter(cfg.common.max_sessions, on_reject=metrics.SESSIONS_REJECTED.inc)
    wyoming = WyomingTTS(runtime, limiter) if cfg.wyoming_port else None  # same core, limiter, metrics

    async def stream(ws: WebSocket) -> None:
        async def serve() -> None:
            session = TTSSession(ws, runtime)
            registry.add(session.session_id, session.close)
            try:
                await session.run()
            finally:
                registry.remove(session.session_id)

        if registry.closing:
            unavailable = "server shutting down"
        elif not runtime.loaded:
            unavailable = runtime.load_error or "model still loading"
        else:
            unavailable = None
        await admit(ws, limiter, serve, unavailable)

    async def ready() -> tuple[bool, str]:
        if runtime.load_error:
            return False, f"engine failed to load: {runtime.load_error}"
        if not runtime.loaded:
            return False, "loading model"
        if limiter.full:
            return False, "at session capacity"
        engine_ok, why = runtime.synth.guard.ready() if runtime.synth else (True, "")
        if not engine_ok:  # circuit breaker open
            return False, why
        store_down = await runtime.store.backend.unavailable() if runtime.store else None
        if store_down:  # Redis down: known voices still speak, but registration would fail here
            return False, store_down
        return True, ""

    async def startup() -> None:
        await runtime.start()
        if wyoming is not None:
            await wyoming.start()

    async def shutdown() -> None:
        if wyoming is not None:
            await wyoming.stop()
        await registry.close_all()
        await runtime.stop()

    return build_app(
        [*make_routes(runtime, limiter), WebSocketRoute("/v1/tts/stream", stream)],
        cfg.common,
        ready,
        startup=startup,
        shutdown=shutdown,
        state={"runtime": runtime},
        registry=registry,
        ready_info=runtime.info,
    )


def make_app() -> tuple[Starlette, CommonConfig]:
    cfg = tts_config.load()
    return create_app(cfg), cfg.common
