"""How a transport plugs into the orchestrator: a `Transport` names its routes and the paths that
authenticate themselves. app.py lists the transports it mounts (`TRANSPORTS`); a new one (say, a
SIP bridge) is a module that builds AgentSessions through `app.state.runtime` and exports one
`Transport`, added to that list, or passed to `create_app(config, transports=...)`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from starlette.routing import BaseRoute


@dataclass(frozen=True)
class Transport:
    name: str
    routes: Callable[[], Sequence[BaseRoute]]  # built at app creation (may read its own settings)
    # path prefixes the API-key check lets through because the transport authenticates them itself
    # (Twilio cannot send our API key; it signs its requests with X-Twilio-Signature instead)
    auth_exempt: tuple[str, ...] = ()
