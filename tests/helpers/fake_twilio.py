"""Twilio's side of a phone call, played exactly, against our real bridge (Twilio costs money, so
this is the one stand-in the rules allow for it).

What it does, as Twilio does (https://www.twilio.com/docs/voice/media-streams/websocket-messages):
- `webhook()`: POSTs the call webhook form (CallSid, AccountSid, From, To, CallStatus, ...) signed
  with X-Twilio-Signature over the public URL + sorted form fields (the twilio SDK computes it),
  and reads the TwiML answer: <Connect><Stream url> and its <Parameter>s.
- `FakeCall`: opens the stream URL with X-Twilio-Signature over that wss/ws URL, sends `connected`
  and `start` {accountSid, streamSid, callSid, tracks, mediaFormat, customParameters}, then a
  `media` message every 20 ms for the whole call — the caller's speech when there is some,
  μ-law silence otherwise, at real-time pace — with sequenceNumber, chunk and timestamp counting
  up as Twilio's do. `dtmf` and `stop` on request.
- The far end's speaker: outbound `media` is queued and "played" at real time, 160 bytes per 20 ms;
  an outbound `mark` is echoed once the audio queued before it has played; `clear` drops the
  unplayed audio and echoes every pending mark at once. What was played is kept (`heard`), so a
  test can tell what the caller actually heard.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
import time
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import numpy as np
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect

from services.common.audio import float_to_int16, mulaw_encode, resample

FRAME_BYTES = 160  # 20 ms of 8 kHz μ-law
FRAME_S = 0.02
SILENCE = b"\xff" * FRAME_BYTES


def sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def to_mulaw(audio: np.ndarray, rate: int) -> bytes:
    """Float audio at `rate` → 8 kHz μ-law, the way a phone line delivers it."""
    return mulaw_encode(float_to_int16(resample(audio, rate, 8000)))


def sign(auth_token: str, url: str, params: dict[str, str] | None = None) -> str:
    return RequestValidator(auth_token).compute_signature(url, params or {})


@dataclass
class TwiML:
    stream_url: str
    parameters: dict[str, str]
    raw: str


def parse_twiml(text: str) -> TwiML:
    root = ET.fromstring(text)
    assert root.tag == "Response", text
    stream = root.find("./Connect/Stream")
    assert stream is not None, f"no <Connect><Stream> in {text}"
    params = {p.get("name"): p.get("value") for p in stream.findall("./Parameter")}
    return TwiML(stream.get("url"), params, text)


async def webhook(
    base_url: str,
    auth_token: str | None,
    public_url: str | None = None,
    query: str = "",
    signature: str | None = "sign",
    headers: dict[str, str] | None = None,
    call_sid: str | None = None,
    verify: ssl.SSLContext | bool = True,
    method: str = "POST",
) -> httpx.Response:
    """POST /twilio/voice like Twilio's call webhook. `public_url` is the URL Twilio believes it
    calls (what it signs); `signature`: "sign" = correct, None = header absent, other = sent as is."""
    path = "/twilio/voice" + (f"?{query}" if query else "")
    form = {
        "AccountSid": sid("AC"),
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid or sid("CA"),
        "CallStatus": "ringing",
        "Called": "+15005550006",
        "Caller": "+15005550001",
        "Direction": "inbound",
        "From": "+15005550001",
        "To": "+15005550006",
    }
    if method == "GET":  # the fields ride in the query, which is then part of the signed URL
        path += ("&" if "?" in path else "?") + urlencode(form)
    sent_headers = dict(headers or {})
    if signature == "sign":
        signed_form = form if method == "POST" else {}
        sent_headers["X-Twilio-Signature"] = sign(auth_token or "", (public_url or base_url) + path, signed_form)
    elif signature is not None:
        sent_headers["X-Twilio-Signature"] = signature
    async with httpx.AsyncClient(timeout=10, verify=verify) as client:
        if method == "GET":
            return await client.get(base_url + path, headers=sent_headers)
        return await client.post(base_url + path, data=form, headers=sent_headers)


@dataclass
class Outbound:
    """Everything the bridge sent, and what the far end did with it."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    heard: bytearray = field(default_factory=bytearray)  # μ-law actually played to the caller
    marks_echoed: list[str] = field(default_factory=list)
    marks_cleared: list[str] = field(default_factory=list)
    clears: int = 0

    def of(self, event: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("event") == event]


class FakeCall:
    def __init__(
        self,
        stream_url: str,
        auth_token: str | None,
        custom_parameters: dict[str, str] | None = None,
        signature: str | None = "sign",
        connect_url: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.ssl_context = ssl_context
        self.stream_url = stream_url  # what Twilio signs (the TwiML's url)
        self.connect_url = connect_url or stream_url  # where the socket really goes (no proxy in tests)
        self.auth_token = auth_token
        self.signature = signature
        self.custom_parameters = custom_parameters or {}
        self.account_sid = sid("AC")
        self.call_sid = sid("CA")
        self.stream_sid = sid("MZ")
        self.ws: ClientConnection | None = None
        self.out = Outbound()
        self.close_code: int | None = None
        self.close_reason: str = ""
        self.closed_by_server = False
        self.last_message_at = 0.0
        self._seq = 0
        self._chunk = 0
        self._speech: deque[bytes] = deque()  # caller frames waiting to be "spoken"
        self._playback: deque[tuple[str, Any]] = deque()  # ("audio", bytes) | ("mark", name)
        self._tasks: list[asyncio.Task] = []
        self._send_lock = asyncio.Lock()
        self.closed = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle
    async def open(self, start: bool = True) -> FakeCall:
        headers = {}
        if self.signature == "sign":
            headers["X-Twilio-Signature"] = sign(self.auth_token or "", self.stream_url)
        elif self.signature is not None:
            headers["X-Twilio-Signature"] = self.signature
        self.ws = await connect(self.connect_url, additional_headers=headers, max_size=None, ssl=self.ssl_context)
        self._tasks.append(asyncio.create_task(self._receive()))
        await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        if start:
            await self.start()
        return self

    async def start(self) -> None:
        await self._send(
            {
                "event": "start",
                "sequenceNumber": self._next_seq(),
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    "customParameters": self.custom_parameters,
                },
                "streamSid": self.stream_sid,
            }
        )
        self._tasks.append(asyncio.create_task(self._microphone()))
        self._tasks.append(asyncio.create_task(self._speaker()))

    async def stop(self, wait_s: float = 5.0) -> None:
        """The call ends the way Twilio ends it: a `stop` message, then the socket closes. Gives the
        bridge `wait_s` to close it first (`closed_by_server`)."""
        for task in self._tasks[1:]:
            task.cancel()  # no media after stop
        await self._send(
            {
                "event": "stop",
                "sequenceNumber": self._next_seq(),
                "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
                "streamSid": self.stream_sid,
            }
        )
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.closed.wait(), wait_s)
        self.closed_by_server = self.closed.is_set()
        await self.hang_up()

    async def hang_up(self) -> None:
        """The socket just goes away (network drop, or after stop)."""
        for task in self._tasks[1:]:
            task.cancel()
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.closed.wait(), 10)

    async def __aenter__(self) -> FakeCall:
        return await self.open()

    async def __aexit__(self, *exc) -> None:
        await self.hang_up()
        for task in self._tasks:
            task.cancel()

    # ------------------------------------------------------------------ the caller's side
    def say(self, audio: np.ndarray, rate: int) -> float:
        """Queue speech; the microphone sends it in real time. Returns its duration in seconds."""
        mulaw = to_mulaw(audio, rate)
        mulaw += b"\xff" * (-len(mulaw) % FRAME_BYTES)
        for i in range(0, len(mulaw), FRAME_BYTES):
            self._speech.append(mulaw[i : i + FRAME_BYTES])
        return len(mulaw) / 8000

    @property
    def speaking(self) -> bool:
        return bool(self._speech)

    async def dtmf(self, digit: str) -> None:
        await self._send(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "sequenceNumber": self._next_seq(),
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    async def send_raw(self, text: str | bytes) -> None:
        """Anything at all, for malformed-input tests."""
        async with self._send_lock:
            await self.ws.send(text)

    async def _microphone(self) -> None:
        """One media message per 20 ms, on an absolute clock so the pace never drifts."""
        t0 = time.monotonic()
        n = 0
        while True:
            frame = self._speech.popleft() if self._speech else SILENCE
            self._chunk += 1
            await self._send(
                {
                    "event": "media",
                    "sequenceNumber": self._next_seq(),
                    "media": {
                        "track": "inbound",
                        "chunk": str(self._chunk),
                        "timestamp": str(int(n * 20)),
                        "payload": base64.b64encode(frame).decode("ascii"),
                    },
                    "streamSid": self.stream_sid,
                }
            )
            n += 1
            delay = t0 + n * FRAME_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    # ------------------------------------------------------------------ the far end's speaker
    async def _receive(self) -> None:
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                self.out.messages.append(message)
                self.last_message_at = time.monotonic()
                event = message.get("event")
                if event == "media":
                    self._playback.append(("audio", base64.b64decode(message["media"]["payload"])))
                elif event == "mark":
                    self._playback.append(("mark", message["mark"]["name"]))
                elif event == "clear":
                    self.out.clears += 1
                    pending = [value for kind, value in self._playback if kind == "mark"]
                    self._playback.clear()
                    for name in pending:  # Twilio echoes the marks of cleared audio right away
                        self.out.marks_cleared.append(name)
                        await self._echo_mark(name)
        except Exception:
            pass
        finally:
            if self.ws is not None:
                self.close_code = self.ws.close_code
                self.close_reason = self.ws.close_reason or ""
            self.closed.set()

    async def _speaker(self) -> None:
        t0 = time.monotonic()
        n = 0
        while True:
            budget = FRAME_BYTES
            while self._playback and (self._playback[0][0] == "mark" or budget > 0):
                kind, value = self._playback[0]
                if kind == "mark":
                    self._playback.popleft()
                    self.out.marks_echoed.append(value)
                    await self._echo_mark(value)
                    continue
                take = value[:budget]
                self.out.heard += take
                budget -= len(take)
                if len(take) == len(value):
                    self._playback.popleft()
                else:
                    self._playback[0] = ("audio", value[len(take) :])
            n += 1
            delay = t0 + n * FRAME_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    async def _echo_mark(self, name: str) -> None:
        await self._send(
            {
                "event": "mark",
                "sequenceNumber": self._next_seq(),
                "streamSid": self.stream_sid,
                "mark": {"name": name},
            }
        )

    # ------------------------------------------------------------------ plumbing
    def _next_seq(self) -> str:
        self._seq += 1
        return str(self._seq)

    async def _send(self, message: dict[str, Any]) -> None:
        if self.ws is None or self.closed.is_set():
            return
        async with self._send_lock:
            with contextlib.suppress(Exception):
                await self.ws.send(json.dumps(message))

    @property
    def unplayed_s(self) -> float:
        return sum(len(v) for k, v in self._playback if k == "audio") / 8000

    @property
    def heard_s(self) -> float:
        return len(self.out.heard) / 8000
