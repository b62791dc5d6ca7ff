"""Liveness and readiness probes for any of the services (GET /health, GET /ready)."""

from __future__ import annotations

import httpx

from ._ws import auth_headers, http_url


async def probe(
    url: str, path: str = "/health", api_key: str | None = None, client: httpx.AsyncClient | None = None
) -> tuple[bool, str]:
    """(ok, reason): ok when the service answers 200; the reason names what failed otherwise.
    Pass a shared `client` to reuse connections (the orchestrator's /ready does)."""
    target = http_url(url) + path
    try:
        if client is None:
            async with httpx.AsyncClient(timeout=2.0) as own:
                response = await own.get(target, headers=auth_headers(api_key))
        else:
            response = await client.get(target, headers=auth_headers(api_key))
    except httpx.HTTPError as exc:
        return False, f"unreachable ({type(exc).__name__})"
    if response.status_code == 200:
        return True, ""
    return False, f"answered {response.status_code}"
