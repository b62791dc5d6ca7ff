"""`/twilio/media`: one Twilio Media Streams WebSocket = one phone call = one AgentSession.

Twilio → us (JSON text frames): `connected`, `start` {streamSid, callSid, mediaFormat,
customParameters}, `media` {track, chunk, timestamp, payload: base64 μ-law 8 kHz}, `mark` {name}
(echo of ours, once played), `dtmf` {digit}, `stop`. Us → Twilio: `media`, `mark`, `clear`
(output.py). The caller's audio is decoded, resampled 8 → 16 kHz (one streaming resampler per
call, so frame joins stay clean) and pushed into the session; keypad digits are collected and sent
as one text turn after a pause or `#`.

Twilio has no error message in this protocol, so a malformed message (bad JSON, deep nesting,
lone surrogates, an oversized frame included) is counted, logged and skipped, and the call goes
on. A `stop`, or the socket closing (hang-up), ends the session cleanly.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import uuid
from typing import Any

from starlette.websockets import WebSocket

from services.common import logs, validate
from services.common.audio import StreamResampler, int16_to_float, mulaw_decode
from services.common.auth import WS_POLICY_VIOLATION
from services.common.errors import CodedError
from services.common.limits import admit
from services.common.protocol.base import ProtocolError
from services.common.ws_endpoint import WebSocketEndpoint

from .. import metrics
from ..runtime import Runtime
from ..session import INPUT_SAMPLE_RATE, AgentSession
from .config import TwilioConfig
from .output import SAMPLE_RATE, TwilioOutput
from .signature import SignatureCheck

log = logging.getLogger("voice.orchestrator.twilio")

SESSION_FIELDS = ("mode", "voice", "language")  # customParameters a call may set (from the webhook query)
EXPECTED_FORMAT = {"encoding": "audio/x-mulaw", "sampleRate": SAMPLE_RATE, "channels": 1}


class TwilioMediaEndpoint:
    """The WebSocket route handler; holds the bridge's settings."""

    def __init__(self, config: TwilioConfig) -> None:
        self.config = config
        self.check = SignatureCheck(config.auth_token) if config.auth_token else None

    async def handle(self, ws: WebSocket) -> None:
        runtime: Runtime = ws.app.state.runtime
        refusal = self._refusal(ws, runtime)
        if refusal:
            label, reason = refusal
            metrics.TWILIO_REFUSED.labels(label).inc()
            logs.event(log, "twilio media stream refused", level=logging.WARNING, reason=reason)
            await ws.accept()
            await ws.close(WS_POLICY_VIOLATION, reason)
            return

        async def serve() -> None:
            await ws.accept()
            metrics.TWILIO_CALLS.inc()
            await TwilioCall(ws, runtime, self.config).run()

        unavailable = "server shutting down" if runtime.registry.closing else None
        refused = metrics.TWILIO_REFUSED.labels("capacity")
        await admit(ws, runtime.limiter, serve, unavailable, on_capacity=lambda _: refused.inc())

    def _refusal(self, ws: WebSocket, runtime: Runtime) -> tuple[str, str] | None:
        """(metric label, close reason) when the handshake is refused, else None."""
        if self.check is not None:
            if not self.check.valid(ws.scope, self.config.public_url):
                return "signature", "invalid or missing X-Twilio-Signature"
            return None
        if runtime.config.common.api_keys:
            return "not_configured", "TWILIO_AUTH_TOKEN must be set when API_KEYS is: Twilio cannot send an API key"
        return None


class TwilioCall(WebSocketEndpoint):
    """One call's receive side on the shared loop (services/common/ws_endpoint.py). Twilio has no
    error message, so this protocol's error shape is a counted, logged skip."""

    def __init__(self, ws: WebSocket, runtime: Runtime, config: TwilioConfig) -> None:
        common = runtime.config.common
        super().__init__(ws, max_frame_bytes=common.max_frame_bytes, idle_timeout_s=common.idle_timeout_s, logger=log)
        self.runtime = runtime
        self.config = config
        self.call_id = uuid.uuid4().hex[:12]
        self.output = TwilioOutput(ws, self.call_id)
        self.session: AgentSession | None = None
        self.call_sid: str | None = None
        self.resampler = StreamResampler(SAMPLE_RATE, INPUT_SAMPLE_RATE)
        self.digits: list[str] = []
        self._dtmf_timer: asyncio.Task | None = None
        self.session_id = self.call_id

    async def run(self) -> None:
        key = f"twilio-{self.call_id}"
        self.runtime.registry.add(key, self.shutdown)
        try:
            await super().run()
        finally:
            self.runtime.registry.remove(key)
            await self._end()

    # ------------------------------------------------------------------ the base's hooks
    async def send_error(self, error: CodedError) -> None:
        metrics.TWILIO_BAD_MESSAGES.inc()
        logs.event(log, "twilio message skipped", level=logging.WARNING, call_id=self.call_id, reason=error.message)

    def parse_text(self, text: str) -> dict[str, Any]:
        return _parse(text)

    async def on_bytes(self, data: bytes) -> None:
        raise ProtocolError("bad_frame", "binary frame (Twilio sends JSON text only)")

    async def on_idle(self) -> bool:
        logs.event(log, "twilio stream idle, closing", level=logging.WARNING, call_id=self.call_id)
        await self._close(1000, "idle timeout")
        return False

    async def on_disconnect(self, code: int | None) -> None:
        if code is not None:
            logs.event(log, "twilio stream closed by peer", call_id=self.call_id, call_sid=self.call_sid)

    async def on_json(self, msg: dict[str, Any]) -> None:
        event = msg.get("event")
        if event == "media":
            await self._media(_section(msg, "media"))
        elif event == "mark":
            name = _section(msg, "mark").get("name")
            if isinstance(name, str):
                self.output.mark_echoed(name)
        elif event == "start":
            await self._start(msg, _section(msg, "start"))
        elif event == "dtmf":
            await self._dtmf(_section(msg, "dtmf").get("digit"))
        elif event == "stop":
            logs.event(log, "twilio stream stopped", call_id=self.call_id, call_sid=self.call_sid)
            self.stop()
            await self._close(1000, "stream stopped")
        elif event == "connected":
            logs.event(log, "twilio connected", call_id=self.call_id, protocol=msg.get("protocol"))
        else:
            raise ProtocolError("unknown_event", f"unknown event {event!r}")

    # ------------------------------------------------------------------ start
    async def _start(self, msg: dict[str, Any], start: dict[str, Any]) -> None:
        if self.session is not None:
            raise ProtocolError("already_started", "a second start on one stream")
        stream_sid = start.get("streamSid") or msg.get("streamSid")
        if not isinstance(stream_sid, str) or not stream_sid:
            raise ProtocolError("bad_start", "start without a streamSid")
        media_format = start.get("mediaFormat") or {}
        if any(media_format.get(k) != v for k, v in EXPECTED_FORMAT.items()):
            logs.event(log, "unexpected media format", level=logging.WARNING, call_id=self.call_id, got=media_format)
        self.call_sid = start.get("callSid")
        self.output.stream_sid = stream_sid
        params = start.get("customParameters") or {}
        session_config = self._session_config(params if isinstance(params, dict) else {})
        try:
            session = self.runtime.new_session(self.output, session_config)
        except ProtocolError as exc:
            logs.event(log, "bad call parameters, using defaults", level=logging.WARNING, reason=exc.message)
            session = self.runtime.new_session(self.output, self._session_config({}))
        self.session = session
        self.output.session = session
        logs.event(log, "twilio call started", call_id=self.call_id, call_sid=self.call_sid,
                   session_id=session.session_id)  # fmt: skip
        await session.start()

    def _session_config(self, params: dict[str, Any]) -> dict[str, Any]:
        config: dict[str, Any] = {"mode": self.config.mode, "sample_rate": SAMPLE_RATE}
        voice = self.config.voice or self.runtime.config.default_voice
        if voice:
            config["voice"] = voice
        config.update({k: params[k] for k in SESSION_FIELDS if isinstance(params.get(k), str) and params[k]})
        return config

    # ------------------------------------------------------------------ media, dtmf
    async def _media(self, media: dict[str, Any]) -> None:
        if self.session is None:
            raise ProtocolError("not_started", "media before start")
        if media.get("track", "inbound") != "inbound":
            return  # only the caller's side is transcribed
        payload = media.get("payload")
        if not isinstance(payload, str):
            raise ProtocolError("bad_media", "media without a base64 payload")
        try:
            mulaw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("bad_media", "media payload is not valid base64") from None
        if mulaw:
            samples = self.resampler.process(int16_to_float(mulaw_decode(mulaw)))
            if len(samples):
                await self.session.push_audio(samples)

    async def _dtmf(self, digit: Any) -> None:
        if self.session is None:
            raise ProtocolError("not_started", "dtmf before start")
        if not isinstance(digit, str) or len(digit) != 1 or digit not in "0123456789*#ABCD":
            raise ProtocolError("bad_dtmf", f"not a keypad digit: {digit!r}")
        if self._dtmf_timer is not None:
            self._dtmf_timer.cancel()
            self._dtmf_timer = None
        if digit == "#":
            await self._send_digits()
            return
        self.digits.append(digit)
        self._dtmf_timer = asyncio.create_task(self._digits_after_pause())

    async def _digits_after_pause(self) -> None:
        await asyncio.sleep(self.config.dtmf_gap_s)
        self._dtmf_timer = None
        await self._send_digits()

    async def _send_digits(self) -> None:
        digits, self.digits = self.digits, []
        if digits and self.session is not None:
            logs.event(log, "caller keyed digits", call_id=self.call_id, count=len(digits))
            await self.session.user_text(keypad_text(digits))

    # ------------------------------------------------------------------ end
    async def shutdown(self) -> None:
        await self._close(1001, "server shutting down")

    async def _close(self, code: int, reason: str) -> None:
        self.output.gone = True
        await self.close(code, reason)

    async def _end(self) -> None:
        if self._dtmf_timer is not None:
            self._dtmf_timer.cancel()
        session, self.session = self.session, None
        self.output.gone = True
        if session is not None:
            await session.close()
        logs.event(log, "twilio call ended", call_id=self.call_id, call_sid=self.call_sid,
                   frames_sent=self.output.frames_sent, marks_sent=self.output.marks_sent)  # fmt: skip


def keypad_text(digits: list[str]) -> str:
    """The text turn for keyed digits: spaced so TTS reads them one by one, labelled so the model
    knows they were keyed, not spoken."""
    return "Keypad: " + " ".join(digits)


def _parse(text: str) -> dict[str, Any]:
    """Twilio's messages are keyed by `event`, not `type`: the guarded parser, then the shape."""
    try:
        msg = validate.parse_json(text)
    except validate.InputError as exc:
        raise ProtocolError(exc.code, exc.message) from None
    if not isinstance(msg, dict):
        raise ProtocolError("bad_json", "message is not a JSON object")
    return msg


def _section(msg: dict[str, Any], name: str) -> dict[str, Any]:
    section = msg.get(name)
    if not isinstance(section, dict):
        raise ProtocolError("bad_message", f"{msg.get('event')} without its {name!r} object")
    return section
