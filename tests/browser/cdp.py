"""Drive Debian's headless Chromium over the DevTools protocol with the `websockets` package we already
depend on (no selenium, no chromedriver): launch, navigate, evaluate JavaScript, take screenshots."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

BASE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--window-size=1280,900",
)


class CDPError(RuntimeError):
    pass


class Chromium:
    """One headless Chromium process with one page, its console kept in `console` (and a log file)."""

    def __init__(self, user_data_dir: Path, fake_audio: Path | None = None, log_path: Path | None = None):
        self.user_data_dir = user_data_dir
        self.fake_audio = fake_audio
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.ws: ClientConnection | None = None
        self.console: list[str] = []
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._reader: asyncio.Task | None = None
        self._log = None

    # ------------------------------------------------------------------ lifecycle
    def _launch(self) -> None:
        self.user_data_dir.mkdir(parents=True, exist_ok=True)
        (self.user_data_dir / "DevToolsActivePort").unlink(missing_ok=True)  # a stale one names a dead port
        args = [CHROMIUM, *BASE_FLAGS, f"--user-data-dir={self.user_data_dir}", "--remote-debugging-port=0"]
        if self.fake_audio:
            args.append(f"--use-file-for-fake-audio-capture={self.fake_audio}")
        args.append("about:blank")
        self._log = open(self.log_path, "ab") if self.log_path else None
        out = self._log or subprocess.DEVNULL
        self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    async def start(self, timeout: float = 30.0) -> Chromium:
        self._launch()
        try:
            port = await self._devtools_port(timeout)
            page_ws = await self._page_target(port, timeout)
            self.ws = await connect(page_ws, max_size=None, ping_interval=None)
            self._reader = asyncio.create_task(self._read())
            await self.send("Runtime.enable")
            await self.send("Page.enable")
        except BaseException:
            await self.close()
            raise
        return self

    async def _devtools_port(self, timeout: float) -> int:
        """Chromium writes the port it picked (for --remote-debugging-port=0) into the profile dir."""
        marker = self.user_data_dir / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CDPError(f"chromium exited with {self.proc.returncode}")
            with contextlib.suppress(OSError, ValueError, IndexError):
                return int(marker.read_text().splitlines()[0])
            await asyncio.sleep(0.1)
        raise CDPError("chromium did not open its DevTools port")

    async def _page_target(self, port: int, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    targets = (await client.get(f"http://127.0.0.1:{port}/json/list")).json()
                    pages = [t for t in targets if t.get("type") == "page"]
                    if pages:
                        return pages[0]["webSocketDebuggerUrl"]
                await asyncio.sleep(0.1)
        raise CDPError("no page target in chromium")

    async def close(self) -> None:
        if self.ws:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.send("Browser.close"), 5)
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self._reader:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log:
            self._log.close()
            self._log = None

    async def __aenter__(self) -> Chromium:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # ------------------------------------------------------------------ protocol
    async def _read(self) -> None:
        async for raw in self.ws:
            msg = json.loads(raw)
            if "id" in msg:
                fut = self._pending.pop(msg["id"], None)
                if fut and not fut.done():
                    fut.set_result(msg)
            else:
                self._on_event(msg.get("method", ""), msg.get("params", {}))
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(CDPError("DevTools connection closed"))

    def _on_event(self, method: str, params: dict) -> None:
        if method == "Runtime.consoleAPICalled":
            parts = [str(a.get("value", a.get("description", ""))) for a in params.get("args", [])]
            self.console.append(f"console.{params.get('type')}: {' '.join(parts)}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            desc = details.get("exception", {}).get("description") or details.get("text")
            self.console.append(f"exception: {desc}")

    async def send(self, method: str, params: dict | None = None, timeout: float = 30.0) -> dict:
        msg_id = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        await self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params or {}}))
        reply = await asyncio.wait_for(fut, timeout)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    # ------------------------------------------------------------------ page helpers
    async def navigate(self, url: str) -> None:
        result = await self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CDPError(f"navigate {url}: {result['errorText']}")

    async def evaluate(self, expression: str, await_promise: bool = False) -> Any:
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": await_promise},
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise CDPError(details.get("exception", {}).get("description") or details.get("text"))
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float, interval: float = 0.2) -> Any:
        """Polls a JS expression until it is truthy; on timeout, says what the page logged."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            with contextlib.suppress(CDPError):
                value = await self.evaluate(expression)
                if value:
                    return value
            await asyncio.sleep(interval)
        tail = "\n".join(self.console[-20:])
        raise TimeoutError(f"page never satisfied `{expression}` in {timeout}s (last: {value!r})\n{tail}")

    async def screenshot(self, path: Path) -> Path:
        data = await self.send("Page.captureScreenshot", {"format": "png"})
        return _write(path, base64.b64decode(data["data"]))


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
