"""Phone calls through Twilio Media Streams (docs/twilio.md).

The orchestrator's app mounts `TRANSPORT` (its `routes()`); `AUTH_EXEMPT` lists the paths
that the API-key check must let through, because Twilio cannot send our API key: these requests
are authenticated by their X-Twilio-Signature instead (required when API_KEYS is set).
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route, WebSocketRoute

from ..transports import Transport
from .config import TwilioConfig, load
from .media import TwilioMediaEndpoint
from .webhook import VoiceWebhook

AUTH_EXEMPT = ("/twilio/",)


def routes(config: TwilioConfig | None = None) -> list[BaseRoute]:
    config = config or load()
    return [
        Route("/twilio/voice", VoiceWebhook(config).handle, methods=["GET", "POST"]),
        WebSocketRoute("/twilio/media", TwilioMediaEndpoint(config).handle),
    ]


TRANSPORT = Transport("twilio", routes, AUTH_EXEMPT)

__all__ = ["AUTH_EXEMPT", "TRANSPORT", "TwilioConfig", "routes"]
