"""A local stand-in for Claude's Messages API that speaks its exact streaming wire format, so the
real anthropic SDK is the client (the only stand-in the rules allow: Claude costs money).

POST /v1/messages with `"stream": true` answers Server-Sent Events in Anthropic's order:
message_start, content_block_start, ping, content_block_delta (text_delta)…, content_block_stop,
message_delta (stop_reason, usage), message_stop. Without `stream` it answers one Message JSON.

Knobs (attributes, change them between requests): `reply`, `ttft_s` (time to first token),
`token_delay_s`, `mode`: "ok" | "429" | "529" | "midstream_error" (an `event: error` with an
overloaded_error after `error_after_tokens` deltas), `fail_requests`: with a failing mode, only
that many requests fail, then it answers "ok" again (None = every request fails; the count goes
down as requests arrive, so a test can watch a service recover). A 429 carries `retry-after`
(seconds) like Anthropic's. Every request body is kept in `requests`
(so tests can check the history the orchestrator sent), `aborted` counts streams the client cut.

    with FakeClaude(reply="Hello there.", ttft_s=0.2) as claude:
        env = {"ANTHROPIC_API_KEY": "test", "ANTHROPIC_BASE_URL": claude.url}
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.helpers.procs import free_port

ERROR_BODIES = {
    "429": (429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    "529": (529, "overloaded_error", "Overloaded"),
}


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def tokens_of(text: str) -> list[str]:
    """Word-sized deltas with their leading space, the way Claude's deltas look."""
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


class FakeClaude:
    def __init__(
        self,
        reply: str = "Hello! This is a test answer. It has three sentences.",
        ttft_s: float = 0.1,
        token_delay_s: float = 0.01,
        mode: str = "ok",
        error_after_tokens: int = 3,
        fail_requests: int | None = None,
        retry_after_s: int = 1,
    ) -> None:
        self.reply = reply
        self.ttft_s = ttft_s
        self.token_delay_s = token_delay_s
        self.mode = mode
        self.error_after_tokens = error_after_tokens
        self.fail_requests = fail_requests
        self.retry_after_s = retry_after_s
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.aborted = 0
        self.completed = 0
        self.port = free_port()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ server
    def start(self) -> FakeClaude:
        app = Starlette(routes=[Route("/v1/messages", self._messages, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fake-claude", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise TimeoutError("fake Claude did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FakeClaude:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def wait_requests(self, n: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fake Claude got {len(self.requests)} requests, wanted {n}")
            time.sleep(0.02)
        return self.requests

    # ------------------------------------------------------------------ API
    async def _messages(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        request_id = "req_" + uuid.uuid4().hex[:20]
        mode = self.mode
        if mode != "ok" and self.fail_requests is not None:
            if self.fail_requests <= 0:
                mode = "ok"
            else:
                self.fail_requests -= 1
        if mode in ERROR_BODIES:
            status, kind, message = ERROR_BODIES[mode]
            await asyncio.sleep(min(self.ttft_s, 0.05))
            headers = {"request-id": request_id, "x-should-retry": "false"}
            if status == 429:
                headers["retry-after"] = str(self.retry_after_s)
            return JSONResponse(
                {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id},
                status_code=status,
                headers=headers,
            )
        model = body.get("model", "claude-test")
        if not body.get("stream"):
            await asyncio.sleep(self.ttft_s)
            return JSONResponse(self._message(model, self.reply, "end_turn"), headers={"request-id": request_id})
        return StreamingResponse(
            self._stream(model, tokens_of(self.reply), mode),
            media_type="text/event-stream",
            headers={"request-id": request_id, "cache-control": "no-cache"},
        )

    def _message(self, model: str, text: str, stop_reason: str | None) -> dict[str, Any]:
        return {
            "id": "msg_" + uuid.uuid4().hex[:24],
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}] if text else [],
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": max(1, len(text.split()))},
        }

    async def _stream(self, model: str, tokens: list[str], mode: str):
        try:
            start = self._message(model, "", None)
            start["usage"]["output_tokens"] = 1
            yield _sse("message_start", {"type": "message_start", "message": start})
            yield _sse(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
            yield _sse("ping", {"type": "ping"})
            await asyncio.sleep(self.ttft_s)
            for i, token in enumerate(tokens):
                if mode == "midstream_error" and i == self.error_after_tokens:
                    yield _sse(
                        "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
                    )
                    return
                if i:
                    await asyncio.sleep(self.token_delay_s)
                yield _sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": token}},
                )
            yield _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
            yield _sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": len(tokens)},
                },
            )
            yield _sse("message_stop", {"type": "message_stop"})
            self.completed += 1
        except asyncio.CancelledError:
            self.aborted += 1
            raise
