"""The language model side of a turn: Claude through the anthropic SDK (async streaming), or the
offline demo responder when no API key is set, plus the per-session conversation history.

Claude's failures (429 rate limit, 529 overloaded, a mid-stream `error` event, the API unreachable)
become one `LLMError` with a stable code, so the session can apologise instead of hanging.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

import anthropic

from services.common import logs
from services.common.errors import CodedError

from .config import OrchestratorConfig

log = logging.getLogger("voice.orchestrator.llm")

DEMO_LABEL = "offline demo responder (no ANTHROPIC_API_KEY)"


class LLMError(CodedError):
    """Claude failed; the message names the failure, never the conversation."""

    status = 502


class Responder(Protocol):
    label: str

    def stream(self, system: str, messages: list[dict[str, Any]]) -> AsyncIterator[str]: ...

    async def aclose(self) -> None: ...


def classify(exc: anthropic.APIError) -> LLMError:
    """SDK exception → LLMError. A mid-stream `error` event arrives as an APIStatusError with the
    stream's HTTP status (200), so the error body's `type` decides before the status code does."""
    body = getattr(exc, "body", None)
    kind = ""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            kind = str(err.get("type", ""))
    status = getattr(exc, "status_code", None)
    if kind == "overloaded_error" or status == 529:
        return LLMError("llm_overloaded", "Claude is overloaded (529); try again shortly")
    if kind == "rate_limit_error" or status == 429:
        return LLMError("llm_rate_limited", "Claude rate limit reached (429); try again shortly")
    if isinstance(exc, anthropic.APIConnectionError):
        return LLMError("llm_unavailable", f"Claude API unreachable: {type(exc).__name__}")
    if status == 200:
        return LLMError("llm_stream_error", f"Claude stream failed: {kind or 'error event'}")
    return LLMError("llm_error", f"Claude API error {status}: {kind or type(exc).__name__}")


class ClaudeResponder:
    def __init__(self, config: OrchestratorConfig) -> None:
        self.config = config
        self.label = f"claude:{config.llm_model}"
        self.client = anthropic.AsyncAnthropic(
            api_key=config.anthropic_api_key,
            base_url=config.anthropic_base_url,
            max_retries=config.llm_max_retries,
            timeout=config.llm_timeout_s,
        )

    async def stream(self, system: str, messages: list[dict[str, Any]]) -> AsyncIterator[str]:
        try:
            async with self.client.messages.stream(
                model=self.config.llm_model,
                max_tokens=self.config.llm_max_tokens,
                system=system,
                messages=messages,
            ) as stream:
                async for text in stream.text_stream:
                    if text:
                        yield text
        except anthropic.APIError as exc:
            raise classify(exc) from exc

    async def aclose(self) -> None:
        await self.client.close()


class DemoResponder:
    """Clearly labelled stand-in so the stack runs offline: it says what it heard and how to enable
    Claude, streamed word by word like a model would."""

    label = "demo"

    def __init__(self, token_delay_s: float = 0.03) -> None:
        self.token_delay_s = token_delay_s

    async def stream(self, system: str, messages: list[dict[str, Any]]) -> AsyncIterator[str]:
        heard = ""
        if messages and messages[-1]["role"] == "user":
            heard = str(messages[-1]["content"]).strip()
        reply = (
            f"This is the offline demo responder. You said: {heard or 'nothing I could hear'}. "
            "Set ANTHROPIC_API_KEY to talk to Claude."
        )
        for i, word in enumerate(reply.split(" ")):
            await asyncio.sleep(self.token_delay_s)
            yield word if i == 0 else " " + word

    async def aclose(self) -> None:
        return None


def make_responder(config: OrchestratorConfig) -> Responder:
    if config.anthropic_api_key:
        return ClaudeResponder(config)
    return DemoResponder()


def warn_if_demo(responder: Responder) -> None:
    if isinstance(responder, DemoResponder):
        logs.event(log, "ANTHROPIC_API_KEY not set: answers come from the " + DEMO_LABEL, level=logging.WARNING)


class Conversation:
    """Per-session history in the Messages API shape. Roles alternate (a user turn whose answer was
    cut before any audio merges with the next one), and old turns are dropped past `max_turns`."""

    def __init__(self, max_turns: int = 20) -> None:
        self.max_turns = max_turns
        self.messages: list[dict[str, Any]] = []

    def add(self, role: str, text: str) -> None:
        text = text.strip()
        if not text:
            return
        if self.messages and self.messages[-1]["role"] == role:
            self.messages[-1]["content"] += "\n" + text
        else:
            self.messages.append({"role": role, "content": text})
        self._trim()

    def replace_last_assistant(self, text: str) -> None:
        """Barge-in after the answer was already recorded: keep only what was heard."""
        if self.messages and self.messages[-1]["role"] == "assistant":
            self.messages.pop()
        self.add("assistant", text)

    def for_request(self) -> list[dict[str, Any]]:
        return [dict(m) for m in self.messages]

    def _trim(self) -> None:
        excess = len(self.messages) - 2 * self.max_turns
        if excess > 0:
            del self.messages[:excess]
        while self.messages and self.messages[0]["role"] != "user":
            self.messages.pop(0)
