"""What every transport of the orchestrator shares in one process: settings, the Claude client,
the session limit, the open-session registry. Transports find it at `app.state.runtime` (a
WebSocket handler: `websocket.app.state.runtime`) and open sessions with `new_session()`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.common.limits import SessionLimiter
from services.common.server import SessionRegistry

from . import metrics
from .config import OrchestratorConfig
from .llm import Responder, make_responder
from .session import AgentOutput, AgentSession, SessionConfig


@dataclass
class Runtime:
    config: OrchestratorConfig
    responder: Responder
    limiter: SessionLimiter
    registry: SessionRegistry = field(default_factory=SessionRegistry)

    @classmethod
    def create(cls, config: OrchestratorConfig) -> Runtime:
        limiter = SessionLimiter(config.common.max_sessions, metrics.ACTIVE_SESSIONS.set, metrics.REJECTED_SESSIONS.inc)
        return cls(config, make_responder(config), limiter)

    def new_session(
        self, output: AgentOutput, session_config: SessionConfig | dict[str, Any] | None = None, **kwargs: Any
    ) -> AgentSession:
        """A session with this process's settings and Claude client. `session_config` as in the
        audio_start payload; raises ProtocolError("bad_config", ...) when it is invalid.
        Hold `runtime.limiter.slot()` around its life so the session counts against MAX_SESSIONS."""
        return AgentSession(self.config, output, session_config, responder=self.responder, **kwargs)
