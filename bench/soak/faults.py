"""Faults: kill and restart ASR, TTS and Redis while sessions are open, and make Claude fail (429,
529, an error event mid-stream) — then record what each client saw, how long until it worked
again, and what was lost.

ASR and TTS are killed with SIGKILL (a crash, not a drain) and restarted on the same port with
the same settings; recovery times run from the restart command. Redis is a real redis-server
stopped and restarted on its port under a TTS that stores voices there.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import time
import wave

import httpx
import numpy as np
import websockets

from tests.helpers.procs import ServiceProcess
from tests.helpers.redis_server import RedisServer
from tests.helpers.speech import concat, silence, speak

from .common import dumps
from .soak import SENTENCES, agent_frame, paced_send, pcm16


def _close_of(exc: BaseException) -> str:
    if isinstance(exc, websockets.ConnectionClosed):
        return f"close {exc.rcvd.code} {exc.rcvd.reason!r}" if exc.rcvd else "connection dropped (no close frame)"
    return type(exc).__name__


class Agent:
    """One /v1/agent/stream session with a background reader that keeps every frame it gets."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.frames: list[tuple[float, int, bytes]] = []
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, mode: str = "agent") -> Agent:
        ws = await websockets.connect(url + "/v1/agent/stream", max_size=None, open_timeout=30)
        await ws.send(agent_frame(0x01, dumps({"mode": mode}).encode()))
        agent = cls(ws)
        await agent.wait(lambda k, p: k == 0x08, 60)
        return agent

    async def _read(self) -> None:
        async for raw in self.ws:
            self.frames.append((time.monotonic(), raw[0], raw[2:]))

    def mark(self) -> int:
        return len(self.frames)

    def errors(self, since: int) -> list[str]:
        return [json.loads(p).get("code", "?") for _, k, p in self.frames[since:] if k == 0x07]

    async def wait(self, match, timeout: float, since: int = 0) -> float | None:
        """Monotonic time of the first frame from `since` on that matches, or None on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, kind, payload in self.frames[since:]:
                if match(kind, payload):
                    return at
            if self.reader.done():
                return None
            await asyncio.sleep(0.05)
        return None

    async def user_text(self, text: str) -> None:
        await self.ws.send(agent_frame(0x0A, dumps({"event": "user_text", "text": text}).encode()))

    async def close(self) -> None:
        self.reader.cancel()
        await self.ws.close()


def upstream_up(service: str):
    def match(kind: int, payload: bytes) -> bool:
        if kind != 0x0A:
            return False
        event = json.loads(payload)
        return event.get("event") == "upstream" and event.get("service") == service and event.get("state") == "up"

    return match


def done(kind: int, payload: bytes) -> bool:
    return kind == 0x09


async def asr_fault(s) -> dict:
    row = {"fault": "ASR killed (SIGKILL) mid-turn, restarted"}
    agent = await Agent.open(s.orchestrator.ws_url, mode="direct")
    ws = await websockets.connect(s.asr.ws_url + "/v1/asr/stream", open_timeout=30)
    await ws.recv()  # ready
    await paced_send(ws, speak(SENTENCES[0]))  # a turn in flight: its final is not out yet
    mark = agent.mark()
    killed = time.monotonic()
    s.asr.stop(sig=signal.SIGKILL)
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 15)
    except Exception as exc:  # noqa: BLE001 — what the client saw is the measurement
        row["asr_client_saw"] = _close_of(exc)
    await agent.wait(lambda k, p: k == 0x07, 15, since=mark)
    row["agent_client_saw"] = ", ".join(sorted(set(agent.errors(mark)))) or "nothing"
    restarted = time.monotonic()
    await asyncio.to_thread(s.asr.start)
    row["down_s"] = round(restarted - killed, 1)
    row["service_ready_s"] = round(time.monotonic() - restarted, 1)
    up = await agent.wait(upstream_up("asr"), 60, since=mark)
    row["agent_reconnected_s"] = None if up is None else round(up - restarted, 1)
    # the agent hears again: a spoken turn comes back as a final transcription
    mark = agent.mark()
    await paced_send(agent.ws, concat(speak(SENTENCES[1]), silence(2.0)), lambda b: agent_frame(0x02, b))
    heard = await agent.wait(lambda k, p: k == 0x04, 60, since=mark)
    row["agent_recovered_s"] = None if heard is None else round(heard - restarted, 1)
    row["lost"] = "the turn in flight at the kill (its audio died with the process); audio sent while ASR was down"
    await agent.close()
    return row


async def tts_fault(s) -> dict:
    row = {"fault": "TTS killed (SIGKILL) mid-answer, restarted"}
    s.claude.reply = " ".join(["This answer is long enough to be cut in the middle of its audio."] * 6)
    agent = await Agent.open(s.orchestrator.ws_url)
    ws = await websockets.connect(s.tts.ws_url + "/v1/tts/stream", max_size=None, open_timeout=30)
    await ws.recv()  # ready
    await ws.send(dumps({"type": "synthesize", "text": "A long sentence to be cut off. " * 30}))
    mark = agent.mark()
    await agent.user_text("Tell me something long.")
    await agent.wait(lambda k, p: k == 0x06, 30, since=mark)  # the answer is being spoken
    killed = time.monotonic()
    s.tts.stop(sig=signal.SIGKILL)
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 15)
    except Exception as exc:  # noqa: BLE001
        row["tts_client_saw"] = _close_of(exc)
    finished = await agent.wait(done, 60, since=mark)
    row["agent_client_saw"] = (", ".join(sorted(set(agent.errors(mark)))) or "nothing") + (
        "; turn ended with done" if finished else "; no done"
    )
    restarted = time.monotonic()
    await asyncio.to_thread(s.tts.start)
    row["down_s"] = round(restarted - killed, 1)
    row["service_ready_s"] = round(time.monotonic() - restarted, 1)
    up = await agent.wait(upstream_up("tts"), 60, since=mark)
    row["agent_reconnected_s"] = None if up is None else round(up - restarted, 1)
    s.claude.reply = "Back again. All good."
    mark = agent.mark()
    await agent.user_text("Are you back?")
    audio = await agent.wait(lambda k, p: k == 0x06, 60, since=mark)
    row["agent_recovered_s"] = None if audio is None else round(audio - restarted, 1)
    row["lost"] = "the rest of the answer being spoken (text was sent; audio stopped); the TTS client's request"
    await agent.close()
    return row


def _wav(audio: np.ndarray) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm16(audio))
    return buf.getvalue()


def redis_fault() -> dict:
    row = {"fault": "Redis stopped under a TTS voice store, restarted"}
    reference = _wav(concat(speak("This is my voice, recorded for the voice store test."), silence(0.5)))
    with RedisServer(label="soak-redis") as redis:
        tts = ServiceProcess("tts", env={"TTS_ENGINE": "espeak", "REDIS_URL": redis.url}, label="soak-redis-tts")
        with tts:
            client = httpx.Client(base_url=tts.url, timeout=30)
            client.post("/v1/voices", files={"file": ("r.wav", reference, "audio/wav")}, data={"id": "known"})
            redis.stop()
            stopped = time.monotonic()
            speech = client.post("/v1/audio/speech", json={"input": "Still here?", "voice": "known"})
            row["known_voice_while_down"] = f"{speech.status_code} ({len(speech.content)} bytes)"
            register = client.post("/v1/voices", files={"file": ("r.wav", reference, "audio/wav")}, data={"id": "new"})
            row["register_while_down"] = f"{register.status_code} {_code(register)}"
            ready = client.get("/ready")
            row["ready_while_down"] = f"{ready.status_code}"
            redis.start()
            restarted = time.monotonic()
            recovered = None
            while time.monotonic() - restarted < 30:
                again = client.post(
                    "/v1/voices", files={"file": ("r.wav", reference, "audio/wav")}, data={"id": "after"}
                )
                if again.status_code < 300:
                    recovered = time.monotonic() - restarted
                    break
                time.sleep(0.5)
            row["down_s"] = round(restarted - stopped, 1)
            row["register_recovered_s"] = None if recovered is None else round(recovered, 1)
            row["lost"] = "nothing stored; registrations during the outage refused (the client must retry)"
            client.close()
    return row


def _code(response: httpx.Response) -> str:
    try:
        return response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return response.text[:60]


CLAUDE_FAULTS = {
    "429": "Claude 429 rate limit",
    "529": "Claude 529 overloaded",
    "midstream_error": "Claude error event mid-stream",
}


async def claude_faults(s, modes: tuple[str, ...] = tuple(CLAUDE_FAULTS)) -> list[dict]:
    rows = []
    s.claude.reply = "Fine, thank you. Anything else?"
    agent = await Agent.open(s.orchestrator.ws_url)
    for mode in modes:
        label = CLAUDE_FAULTS[mode]
        s.claude.mode, s.claude.fail_requests = mode, 1
        mark = agent.mark()
        started = time.monotonic()
        await agent.user_text("Hello?")
        finished = await agent.wait(done, 60, since=mark)
        said = "".join(p.decode() for _, k, p in agent.frames[mark:] if k == 0x05)
        audio = sum(1 for _, k, _p in agent.frames[mark:] if k == 0x06)
        saw = ", ".join(sorted(set(agent.errors(mark)))) or "no error"
        rows.append(
            {
                "fault": label,
                "agent_client_saw": f"{saw}; said {said[:60]!r}; {audio} audio frames; "
                + ("done" if finished else "NO done"),
                "turn_s": None if finished is None else round(finished - started, 1),
            }
        )
        mark = agent.mark()
        started = time.monotonic()
        await agent.user_text("And now?")  # Claude answers again (fail_requests used up)
        ok = await agent.wait(done, 60, since=mark)
        answered = "".join(p.decode() for _, k, p in agent.frames[mark:] if k == 0x05)
        rows[-1]["agent_recovered_s"] = None if ok is None or "Fine" not in answered else round(ok - started, 1)
        rows[-1]["lost"] = "that turn's answer (an apology instead); history kept"
    s.claude.mode, s.claude.fail_requests = "ok", None
    await agent.close()
    return rows


async def run(s, parts: tuple[str, ...] = ("asr", "tts", "redis", "claude")) -> list[dict]:
    rows: list[dict] = []
    if "claude" in parts:
        rows += await claude_faults(s)
    if "asr" in parts:
        rows.append(await asr_fault(s))
    if "tts" in parts:
        rows.append(await tts_fault(s))
    if "redis" in parts:
        rows.append(await asyncio.to_thread(redis_fault))
    return rows
