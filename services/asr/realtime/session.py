"""`WS /v1/realtime?intent=transcription`: OpenAI's Realtime transcription protocol over the ASR core.

Client events: `session.update` (a `transcription` session), `input_audio_buffer.append` (base64
audio in the session's format), `input_audio_buffer.commit`, `input_audio_buffer.clear`.
Server events: `session.created` / `session.updated`, `input_audio_buffer.speech_started` /
`speech_stopped` (when turn detection is on) / `committed` / `cleared`,
`conversation.item.input_audio_transcription.delta` / `.completed` / `.failed`, and `error`
(`{type, event_id, error: {type, code, message, param, event_id}}`). docs/asr.md has the details.

What is OpenAI's and what is ours: the event shapes are OpenAI's; the turns, partials, limits,
metrics and logs are the core's, the same as on `/v1/asr/stream`. Deltas come from our partials
through AppendOnlyText (services/asr/append_only.py); `completed` always carries the whole final
transcript.
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import copy
import json
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.websockets import WebSocket

from services.common.errors import CodedError
from services.common.protocol.asr import Final, Partial, Ready, SpeechEnd, SpeechStart
from services.common.protocol.base import Error
from services.common.server import SessionRegistry
from services.common.validate import parse_json_object
from services.common.ws_endpoint import WebSocketEndpoint

from ..append_only import AppendOnlyText
from ..config import ASRConfig
from ..core import Closed, Output, SessionCore, TranscriptionFailed, TurnCommitted, log
from ..engines import Engines
from ..transcript import SAMPLE_RATE
from .config import FORMATS, RealtimeError, default_session, merged, to_configure

MIN_COMMIT_MS = 100  # OpenAI refuses to commit less than this
CLIENT_EVENTS = {
    "session.update": {"session"},
    "input_audio_buffer.append": {"audio"},
    "input_audio_buffer.commit": set(),
    "input_audio_buffer.clear": set(),
}
WS_POLICY_VIOLATION = 1008


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def server_event(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, "event_id": new_id("event"), **fields}, separators=(",", ":"))


def error_event(error: CodedError, client_event_id: str | None = None) -> str:
    kind = "server_error" if error.code in ("internal", "transcription_failed") else "invalid_request_error"
    body = {
        "type": kind,
        "code": error.code,
        "message": error.message,
        "param": getattr(error, "param", None),
        "event_id": client_event_id,
    }
    return server_event("error", error=body)


async def refuse_intent(ws: WebSocket) -> None:
    """Only transcription sessions are served here: an OpenAI error, then close 1008."""
    error = RealtimeError("invalid_intent", "this server offers Realtime transcription only: connect with "
                          "?intent=transcription", "intent")  # fmt: skip
    with contextlib.suppress(Exception):
        await ws.send_text(error_event(error))
        await ws.close(WS_POLICY_VIOLATION, "intent=transcription required")


# adapter-own events, posted through the core so they keep their place among its outputs
@dataclass(frozen=True)
class _ClientError:
    error: CodedError
    client_event_id: str | None


@dataclass(frozen=True)
class _Cleared:
    pass


@dataclass(frozen=True)
class _EmptyCommit:
    seconds: float


class RealtimeSession(WebSocketEndpoint):
    def __init__(self, ws: WebSocket, config: ASRConfig, engines: Engines, registry: SessionRegistry) -> None:
        common = config.common
        super().__init__(ws, max_frame_bytes=common.max_frame_bytes, idle_timeout_s=common.idle_timeout_s, logger=log)
        self.session = default_session("", config.model_name)
        self.core = SessionCore(config, engines, registry, source="realtime", initial=to_configure(self.session))
        self.session_id = self.core.id
        self.session["id"] = "sess_" + self.core.id.removeprefix("asr_")
        self.snapshots: collections.deque[dict[str, Any]] = collections.deque([copy.deepcopy(self.session)])
        self.created = False
        self.item: str | None = None  # the open turn's item
        self.previous_item: str | None = None
        self.awaiting: collections.deque[tuple[str, AppendOnlyText]] = collections.deque()  # committed, final due
        self.text = AppendOnlyText()  # deltas of the open item
        self.appended_bytes = 0  # since the last commit / clear
        self.turns_seen = 0  # core.turn_id_finalized at the last commit: more since = the VAD committed
        self.client_event_id: str | None = None
        self._timed_out = False

    # ------------------------------------------------------------ core → OpenAI events
    @property
    def detecting(self) -> bool:
        return self.session["audio"]["input"]["turn_detection"] is not None

    async def _send(self, event: Output) -> None:
        text = self._translate(event)
        if isinstance(event, Closed):
            with contextlib.suppress(Exception):
                await self.ws.close(code=event.code, reason=event.reason)
            return
        for item in text:
            await self.ws.send_text(item)

    def _translate(self, event: Output) -> list[str]:
        if isinstance(event, Ready):
            session = self.snapshots.popleft() if self.snapshots else self.session
            kind = "session.updated" if self.created else "session.created"
            self.created = True
            return [server_event(kind, session=session)]
        if isinstance(event, SpeechStart):
            item = self._open_item()
            if self.detecting:
                return [server_event("input_audio_buffer.speech_started", audio_start_ms=_ms(event.timestamp),
                                     item_id=item)]  # fmt: skip
            return []
        if isinstance(event, SpeechEnd):
            if self.detecting:
                return [server_event("input_audio_buffer.speech_stopped", audio_end_ms=_ms(event.timestamp),
                                     item_id=self._open_item())]  # fmt: skip
            return []
        if isinstance(event, TurnCommitted):
            item = self._commit_item()
            self.awaiting.append((item, self.text))
            self.text = AppendOnlyText()
            return [self._committed(item)]
        if isinstance(event, Partial):
            return self._delta(self.item, self.text.partial(event.text)) if self.item else []
        if isinstance(event, Final):
            item, text = self.awaiting.popleft() if self.awaiting else (self._commit_item(), AppendOnlyText())
            seconds = round(max(0.0, event.end - event.start), 3)
            return [*self._delta(item, text.final(event.text)), self._completed(item, event.text, seconds)]
        if isinstance(event, TranscriptionFailed):
            item, _ = self.awaiting.popleft() if self.awaiting else (self._commit_item(), None)
            failure = {"type": "server_error", "code": event.code, "message": event.message, "param": None}
            return [server_event("conversation.item.input_audio_transcription.failed", item_id=item,
                                 content_index=0, error=failure)]  # fmt: skip
        if isinstance(event, _ClientError):
            return [error_event(event.error, event.client_event_id)]
        if isinstance(event, Error):  # raised by the core itself (idle timeout)
            return [error_event(CodedError(event.code, event.message))]
        if isinstance(event, _Cleared):
            self.item, self.text = None, AppendOnlyText()
            return [server_event("input_audio_buffer.cleared")]
        if isinstance(event, _EmptyCommit):
            item = self._commit_item()
            return [self._committed(item), self._completed(item, "", event.seconds)]
        return []

    def _open_item(self) -> str:
        if self.item is None:
            self.item = new_id("item")
        return self.item

    def _commit_item(self) -> str:
        item = self._open_item()
        self.item = None
        return item

    def _committed(self, item: str) -> str:
        previous, self.previous_item = self.previous_item, item
        return server_event("input_audio_buffer.committed", item_id=item, previous_item_id=previous)

    def _completed(self, item: str, transcript: str, seconds: float) -> str:
        return server_event(
            "conversation.item.input_audio_transcription.completed",
            item_id=item,
            content_index=0,
            transcript=transcript,
            usage={"type": "duration", "seconds": seconds},
        )

    def _delta(self, item: str, piece: str) -> list[str]:
        if not piece:
            return []
        return [server_event("conversation.item.input_audio_transcription.delta", item_id=item, content_index=0,
                             delta=piece)]  # fmt: skip

    async def send_error(self, error: CodedError) -> None:
        self.core.count_error(error)
        self.core.post(_ClientError(error, self.client_event_id))

    # ------------------------------------------------------------ OpenAI events → core
    async def on_connect(self) -> None:
        self.core.open(self._send)

    async def on_disconnect(self, code: int | None) -> None:
        await self.core.close()

    async def on_idle(self) -> bool:
        if self._timed_out or self.core.ending:
            return False
        self._timed_out = True
        await self.core.idle_timeout(self.idle_timeout_s or 0.0)
        return True

    # a frame that is never parsed (over MAX_FRAME_BYTES, not JSON, binary) has no event_id to
    # echo: its error must not carry the previous event's
    def too_large(self, size: int, binary: bool) -> CodedError:
        self.client_event_id = None
        return super().too_large(size, binary)

    def parse_text(self, text: str) -> dict[str, Any]:
        self.client_event_id = None
        # the audio travels inside the JSON here: MAX_FRAME_BYTES (checked already) bounds it, not
        # the 1 MiB default of parse_json, which would refuse appends a raised MAX_FRAME_BYTES allows
        return parse_json_object(text, max_bytes=self.max_frame_bytes)

    async def on_bytes(self, data: bytes) -> None:
        self.client_event_id = None
        raise RealtimeError("invalid_value", "binary frames are not part of the Realtime protocol: send "
                            "input_audio_buffer.append events with base64 audio")  # fmt: skip

    async def on_json(self, data: dict[str, Any]) -> None:
        event_id = data.get("event_id")
        self.client_event_id = event_id if isinstance(event_id, str) else None
        kind = data["type"]
        allowed = CLIENT_EVENTS.get(kind)
        if allowed is None:
            raise RealtimeError(
                "invalid_value",
                f"Invalid value: '{kind[:64]}'. This transcription endpoint takes {', '.join(CLIENT_EVENTS)}.",
                "type",
            )
        for key in data:
            if key not in allowed and key not in ("type", "event_id"):
                raise RealtimeError("unknown_parameter", f"Unknown parameter: '{key[:64]}'.", key[:64])
        if kind == "session.update":
            self._update(data.get("session"))
        elif kind == "input_audio_buffer.append":
            await self._append(data.get("audio"))
        elif kind == "input_audio_buffer.commit":
            await self._commit()
        else:
            await self.core.clear()
            self.appended_bytes = 0
            self.core.post(_Cleared())

    def _update(self, update: Any) -> None:
        new = merged(self.session, update)
        configure = to_configure(new)
        if configure == to_configure(self.session):
            self.core.announce()  # only echoed fields changed (model name, noise reduction, include)
        else:
            if self.core.audio_seen or self.core.ending:
                raise RealtimeError(
                    "session_update_too_late",
                    "audio format, transcription language/prompt and turn detection can only change before the "
                    "first input_audio_buffer.append; the session keeps its settings",
                    "session",
                )
            self.core.configure(configure)
        self.session = new
        self.snapshots.append(copy.deepcopy(new))

    async def _append(self, audio: Any) -> None:
        if not isinstance(audio, str):
            raise RealtimeError("invalid_type", "audio must be a base64 string", "audio")
        try:
            raw = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise RealtimeError("invalid_value", "audio is not valid base64", "audio") from None
        if not raw:
            raise RealtimeError("invalid_value", "audio is empty", "audio")
        await self.core.audio(raw)
        self.appended_bytes += len(raw)

    def _buffered_ms(self) -> float:
        encoding, rate = FORMATS[self.session["audio"]["input"]["format"]["type"]]
        width = 2 if encoding == "pcm_s16le" else 1
        return self.appended_bytes / width / rate * 1000.0

    async def _commit(self) -> None:
        ms = self._buffered_ms()
        if ms < MIN_COMMIT_MS:
            raise RealtimeError(
                "input_audio_buffer_commit_empty",
                f"Error committing input audio buffer: buffer too small. Expected at least {MIN_COMMIT_MS}ms of "
                f"audio, but buffer only has {ms:.2f}ms of audio.",
            )
        self.appended_bytes = 0
        flushed = await self.core.flush()
        vad_committed, self.turns_seen = self.core.turn_id_finalized > self.turns_seen, self.core.turn_id_finalized
        if flushed:
            return
        if vad_committed:  # turn detection already committed the buffer: what is left is the audio since
            ms = (self.core.clock - self.core.finalized_at) / SAMPLE_RATE * 1000.0
            if ms < MIN_COMMIT_MS:
                raise RealtimeError("input_audio_buffer_commit_empty", f"Error committing input audio buffer: "
                                    f"buffer too small. Expected at least {MIN_COMMIT_MS}ms of audio, but buffer "
                                    f"only has {ms:.2f}ms of audio.")  # fmt: skip
        # the VAD heard no speech in what was appended: an item with an empty transcript
        self.core.post(_EmptyCommit(round(ms / 1000.0, 3)))


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))
