"""The orchestrator's HTTP app: `/v1/agent/stream`, the Twilio bridge routes when present,
/health, /ready (ASR and TTS reachable), /metrics, and the browser client served at `/`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from clients.voice import probe
from services.common import logs
from services.common.config import REPO_ROOT, CommonConfig
from services.common.server import build_app

from . import transport_ws, twilio
from .config import OrchestratorConfig, load
from .llm import warn_if_demo
from .runtime import Runtime
from .transports import Transport

log = logging.getLogger("voice.orchestrator")

# every way in, mounted in this order (see transports.py for adding one)
TRANSPORTS: tuple[Transport, ...] = (transport_ws.TRANSPORT, twilio.TRANSPORT)


def _web_dir(config: OrchestratorConfig) -> Path:
    path = Path(config.web_dir)
    return path if path.is_absolute() else REPO_ROOT / path


class _RootToIndex:
    """`/` → `/index.html` before auth runs, so the page itself can be public (it holds no data;
    the WebSocket it opens still needs `?api_key=` when API_KEYS is set)."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.state = app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") == "/":
            scope = {**scope, "path": "/index.html", "raw_path": b"/index.html"}
        await self.app(scope, receive, send)


def create_app(config: OrchestratorConfig, transports: Sequence[Transport] = TRANSPORTS) -> Starlette:
    runtime = Runtime.create(config)
    http = httpx.AsyncClient(timeout=2.0)

    async def ready() -> tuple[bool, str]:
        if runtime.limiter.full:
            return False, "at capacity"

        async def check(name: str, url: str) -> str | None:
            ok, reason = await probe(url, "/health", config.upstream_api_key, http)
            return None if ok else f"{name} {reason}"

        problems = [p for p in await asyncio.gather(check("asr", config.asr_url), check("tts", config.tts_url)) if p]
        return (not problems, "; ".join(problems))

    async def startup() -> None:
        for noisy in ("httpx", "httpx2"):  # a line per readiness probe and per Claude request otherwise
            logging.getLogger(noisy).setLevel(logging.WARNING)
        warn_if_demo(runtime.responder)
        logs.event(log, "orchestrator starting", llm=runtime.responder.label, asr=config.asr_url, tts=config.tts_url)

    async def shutdown() -> None:
        await runtime.registry.close_all()
        await runtime.responder.aclose()
        await http.aclose()

    routes: list[BaseRoute] = [route for transport in transports for route in transport.routes()]
    web = _web_dir(config)
    exempt = ["/health", *(path for transport in transports for path in transport.auth_exempt)]
    if web.is_dir():
        exempt += ["/index.html"] + [
            "/" + p.relative_to(web).as_posix() for p in web.rglob("*") if p.is_file()
        ]  # the page's own files are public; everything else needs a key when API_KEYS is set
        routes.append(Mount("/", app=StaticFiles(directory=web, html=True), name="web"))  # last: API routes win
    app = build_app(
        routes,
        config.common,
        ready,
        startup=startup,
        shutdown=shutdown,
        auth_exempt=exempt,
        state={"runtime": runtime},
        registry=runtime.registry,
    )
    return app


def make_app() -> tuple[Starlette, CommonConfig]:
    config = load()
    return _RootToIndex(create_app(config)), config.common  # type: ignore[return-value]
