"""Which URL Twilio called, and whether Twilio really called it (X-Twilio-Signature).

Twilio signs the exact public URL it requested (plus, for the webhook, the POSTed form fields)
with the account's auth token. Behind nginx or any TLS terminator the orchestrator sees
`http://10.0.0.5:8000/twilio/voice`, not the `https://voice.example.com/twilio/voice` Twilio
signed, so the public URL is rebuilt: PUBLIC_URL when configured (the robust choice), else the
X-Forwarded-Proto / X-Forwarded-Host headers the proxy sets (deploy/nginx sets both), else the
request as received. The WebSocket handshake is signed over its wss:// URL with no parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from twilio.request_validator import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)

WS_SCHEME = {"https": "wss", "http": "ws", "wss": "wss", "ws": "ws"}
HTTP_SCHEME = {"wss": "https", "ws": "http", "https": "https", "http": "http"}


def _first(value: str | None) -> str | None:
    """A forwarded header may list several hops ("https, http"): the first is the client's."""
    if not value:
        return None
    return value.split(",")[0].strip() or None


def public_base(scope: Mapping[str, Any], public_url: str | None) -> str:
    """`https://host[:port]` as the caller (Twilio) sees this server, without a trailing slash."""
    if public_url:
        return public_url.rstrip("/")
    headers = Headers(scope=scope)
    received = scope.get("scheme", "http")
    scheme = (_first(headers.get("x-forwarded-proto")) or received).lower()
    scheme = HTTP_SCHEME.get(scheme, "http")
    host = _first(headers.get("x-forwarded-host")) or headers.get("host")
    if not host:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scheme}://{host}"


def requested_url(scope: Mapping[str, Any], public_url: str | None) -> str:
    """The full URL Twilio requested: public base + path + query; ws(s):// for a WebSocket."""
    base = public_base(scope, public_url)
    if scope["type"] == "websocket":
        scheme, rest = base.split("://", 1)
        base = f"{WS_SCHEME[scheme]}://{rest}"
    prefix = urlsplit(base).path  # PUBLIC_URL may carry a path prefix (a proxy mounting us under /voice)
    path = scope.get("path", "/")
    url = base + (path[len(prefix) :] if prefix and path.startswith(prefix) else path)
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{url}?{query}" if query else url


def stream_url(scope: Mapping[str, Any], public_url: str | None, path: str = "/twilio/media") -> str:
    """The wss:// (ws:// on plain HTTP) URL Twilio should open for the media stream."""
    scheme, rest = public_base(scope, public_url).split("://", 1)
    return f"{WS_SCHEME[scheme]}://{rest}{path}"


class SignatureCheck:
    """X-Twilio-Signature validation with the twilio SDK (HMAC-SHA1 by default, HMAC-SHA256 when
    the X-Twilio-Webhooks-Signature-Settings header names it)."""

    def __init__(self, auth_token: str) -> None:
        self._validator = RequestValidator(auth_token)

    def valid(self, scope: Mapping[str, Any], public_url: str | None, params: Any = None) -> bool:
        headers = Headers(scope=scope)
        signature = headers.get(SIGNATURE_HEADER)
        if not signature:
            return False
        algorithm = get_signature_algorithm(headers.get(SIGNATURE_SETTINGS_HEADER))
        url = requested_url(scope, public_url)
        return self._validator.validate(url, params or {}, signature, algorithm=algorithm)
