"""SIGTERM on a real TTS process (espeak): a drain that finishes in time exits 0; one that has to
cut a stalled REST stream and a stuck WebSocket exits EXIT_DRAIN_CUT within a bounded time, and
neither leaves an ERROR line or a traceback in the log (operators alert on those), nor any text
the clients sent (services/common/server.DrainingServer, docs/reliability.md "Shutdown")."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import time

import pytest
import uvicorn
import websockets
from starlette.applications import Starlette
from starlette.routing import Route

from services.common.server import EXIT_CLEAN, EXIT_DRAIN_CUT, EXIT_STARTUP_FAILED, DrainingServer
from tests.helpers.procs import ServiceProcess, free_port

pytestmark = pytest.mark.usefixtures("espeak")
MARKER = "Zanzibarquux"  # a word that must never reach the log


class LoggedService(ServiceProcess):
    """A ServiceProcess whose log lines from this start on can be read back as JSON."""

    def start(self, *args, **kwargs) -> LoggedService:
        self.offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        return super().start(*args, **kwargs)

    def lines(self) -> list[dict]:
        with open(self.log_path, "rb") as f:
            f.seek(self.offset)
            text = f.read().decode("utf-8", "replace")
        assert "Traceback" not in text, text[-4000:]
        assert MARKER not in text
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def tts(tmp_path, label: str, drain_s: str) -> LoggedService:
    env = {"TTS_ENGINE": "espeak", "TTS_VOICES_DIR": str(tmp_path), "REDIS_URL": "", "DRAIN_TIMEOUT_S": drain_s}
    env["TTS_MAX_TEXT_CHARS"] = "8000"
    return LoggedService("tts", env=env, label=label).start()


async def sigterm(service: ServiceProcess) -> tuple[int, float]:
    started = time.monotonic()
    service.proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(service.proc.wait, 60)
    return code, time.monotonic() - started


async def test_a_drain_that_finishes_in_time_exits_0(tmp_path):
    service = tts(tmp_path, "hardening-drain-clean", "5")
    try:
        async with websockets.connect(service.ws_url + "/v1/tts/stream") as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "ready"
            code, _ = await sigterm(service)
            with pytest.raises(websockets.ConnectionClosed) as info:
                while True:
                    await asyncio.wait_for(ws.recv(), 30)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001  # the session's own close
        assert code == EXIT_CLEAN, service.log_tail()
        lines = service.lines()
        assert not [line for line in lines if line["level"] in ("ERROR", "CRITICAL")], lines
        assert not [line for line in lines if "cut at shutdown" in line["msg"]], lines
    finally:
        service.stop(timeout=5)


async def test_a_drain_that_cuts_logs_one_warning_per_request_and_exits_non_zero(tmp_path):
    service = tts(tmp_path, "hardening-drain-cut", "1")
    try:
        long_text = " ".join(f"{MARKER} sentence {i} of a long text that keeps the engine busy." for i in range(100))
        # a WebSocket synthesis whose client stops reading: its close cannot go out
        ws = await websockets.connect(service.ws_url + "/v1/tts/stream", max_size=None)
        assert json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "ready"
        await ws.send(json.dumps({"type": "synthesize", "text": long_text[:7000]}))
        while True:
            message = await asyncio.wait_for(ws.recv(), 60)
            event = json.loads(message) if isinstance(message, str) else {}
            assert event.get("type") != "error", event
            if event.get("type") == "audio_chunk":
                break
        # a REST speech stream whose client reads nothing: the body cannot finish on its own
        slow = socket.create_connection(("127.0.0.1", service.port))
        body = json.dumps({"model": "x", "input": long_text[:7000], "response_format": "pcm"}).encode()
        slow.sendall(
            b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await asyncio.sleep(0.5)
        code, took = await sigterm(service)
        slow.close()
        # DRAIN_TIMEOUT_S=1 for the sessions, 1 s for the connections, the cut (<= 1 s), <= 2 s for
        # worker threads: 8 s is generous for a loaded box (uvicorn alone once waited 10 s)
        assert took < 8, f"exit took {took:.1f} s after SIGTERM"
        assert code == EXIT_DRAIN_CUT, service.log_tail()  # not -15: the signal was handled
        lines = service.lines()
        assert not [line for line in lines if line["level"] in ("ERROR", "CRITICAL")], lines
        cut = [line for line in lines if line["msg"] == "request cut at shutdown"]
        assert cut and all(line["level"] == "WARNING" and line["code"] == "drain_timeout" for line in cut), lines
        assert {line["kind"] for line in cut} <= {"http", "websocket"}
        assert "http" in {line["kind"] for line in cut}, lines  # the stalled REST stream
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 30)
    finally:
        service.stop(timeout=5)


async def until(predicate, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_request_task_left_after_the_cut_is_cancelled_without_an_error(caplog):
    """In process, so the last step of the cut is reached for sure: a handler awaiting forever (it
    never reads the disconnect) outlives its aborted connection and is cancelled; uvicorn would log
    that CancelledError as an ERROR traceback."""

    async def stuck(request):
        await asyncio.Event().wait()

    app = Starlette(routes=[Route("/stuck", stuck)])
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    config.timeout_graceful_shutdown = 0.2
    server = DrainingServer(config, drain_timeout_s=0.2)
    caplog.set_level(logging.INFO)
    serving = asyncio.create_task(server.serve())
    await until(lambda: server.started)
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    await until(lambda: server.server_state.tasks)
    server.should_exit = True
    await asyncio.wait_for(serving, 30)
    writer.close()
    assert server.exit_code() == EXIT_DRAIN_CUT
    records = caplog.records
    assert not [r for r in records if r.levelno >= logging.ERROR], [r.getMessage() for r in records]
    assert [r for r in records if r.getMessage() == "request cut at shutdown" and r.levelno == logging.WARNING]
    assert [r for r in records if r.getMessage() == "request tasks cancelled at shutdown"]
    assert not server.server_state.tasks


async def test_a_service_that_cannot_start_exits_3(tmp_path):
    """A port already taken: the bind error is logged and the exit code is EXIT_STARTUP_FAILED, so a
    supervisor tells "never served" from a clean drain (0) or a cut one (75)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {"TTS_ENGINE": "espeak", "TTS_VOICES_DIR": str(tmp_path), "REDIS_URL": ""}
        service = LoggedService("tts", env=env, port=taken.getsockname()[1], label="hardening-port-taken")
        service.start(wait="")
        try:
            code = await asyncio.to_thread(service.proc.wait, 120)
        finally:
            service.stop(timeout=5)
    assert code == EXIT_STARTUP_FAILED, service.log_tail()
    assert "address already in use" in service.log_tail().lower()
