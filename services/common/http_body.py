"""Reading a REST request body with a hard cap, before any parsing.

Starlette's `request.body()` and `request.form()` read whatever the client sends (a chunked
upload has no Content-Length to refuse early), so every route that takes a body reads it here:
an oversize body costs at most the cap in memory and is refused with 413.
"""

from __future__ import annotations

from starlette.requests import Request


class BodyTooLarge(Exception):
    """The body (declared or as received) is over the route's cap."""


async def read_capped(request: Request, cap: int) -> bytes:
    """The whole body, or BodyTooLarge as soon as it passes `cap` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > cap:
        raise BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)
