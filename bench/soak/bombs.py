"""Bombs and traversal: the inputs of issue 9 items 1–2, measured (not fixed) here.

- Decompression bomb: a FLAC of hours of digital silence (~190 bytes per second of audio) sent to
  the ASR upload and to TTS voice registration. Measured: the answer, its time, the service's
  peak RSS while it works, and the slowest /health answer meanwhile (is the event loop free?).
- Path traversal on the directory voice store: ids like `..`, `../planted`, `voice\\n` on every
  route and message that takes one, against a TTS whose store sits next to a planted file. A
  bypass = a 2xx for such an id, or any change outside the store.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import tempfile
import threading
import time
from pathlib import Path

import httpx
import websockets

from tests.hardening.audio_files import silent_flac
from tests.helpers.procs import ServiceProcess

from .common import OUT, dumps, rss_mb

TRAVERSAL_IDS = ["..", "../planted", "../../../x", "voice\n", "%2e%2e", "..%2fplanted", "a/../../planted", ".", ""]


def bomb_file(hours: float) -> bytes:
    cache = OUT / "cache" / f"silence-{hours:g}h.flac"
    if cache.exists():
        return cache.read_bytes()
    data = silent_flac(hours * 3600)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(data)
    return data


class Watch:
    """Samples a service's RSS and its /health latency in a thread while a request runs."""

    def __init__(self, service: ServiceProcess) -> None:
        self.service = service
        self.peak_mb = rss_mb(service) or 0.0
        self.start_mb = self.peak_mb
        self.health_max_s = 0.0
        self.health_failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    client.get(self.service.url + "/health")
                except httpx.HTTPError:
                    self.health_failures += 1
                self.health_max_s = max(self.health_max_s, time.monotonic() - started)
                self.peak_mb = max(self.peak_mb, rss_mb(self.service) or 0.0)
                self._stop.wait(0.25)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(35)


def bomb(service: ServiceProcess, url: str, data: bytes, form: dict, timeout_s: float) -> dict:
    with Watch(service) as watch:
        started = time.monotonic()
        try:
            response = httpx.post(url, files={"file": ("bomb.flac", data, "audio/flac")}, data=form, timeout=timeout_s)
            answer = f"{response.status_code} {_code(response)}"
        except httpx.HTTPError as exc:
            answer = f"no answer ({type(exc).__name__})"
        elapsed = time.monotonic() - started
    return {
        "answer": answer,
        "seconds": round(elapsed, 1),
        "rss_start_mb": round(watch.start_mb),
        "rss_peak_mb": round(watch.peak_mb),
        "health_max_s": round(watch.health_max_s, 2),
        "health_failures": watch.health_failures,
        "alive": service.proc is not None and service.proc.poll() is None,
    }


def _code(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "(no JSON error)" if response.status_code >= 400 else ""


def bombs(s, hours: float, timeout_s: float = 300.0) -> list[dict]:
    data = bomb_file(hours)
    label = f"{len(data) / 1e6:.1f} MB FLAC, {hours:g} h of silence"
    return [
        {
            "target": f"ASR POST /v1/audio/transcriptions ({label})",
            **bomb(s.asr, s.asr.url + "/v1/audio/transcriptions", data, {"model": "whisper-1"}, timeout_s),
        },
        {
            "target": f"TTS POST /v1/voices ({label})",
            **bomb(s.tts, s.tts.url + "/v1/voices", data, {"id": "bomb"}, timeout_s),
        },
    ]


def raw_request(port: int, method: str, path: str) -> int:
    """The path exactly as given (httpx would normalize `..` away and refuse a raw newline)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path.replace("\n", "%0A"), skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` outside the store, with its content hash."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "store" not in p.relative_to(root).parts
    }


async def traversal() -> dict:
    with tempfile.TemporaryDirectory(prefix="soak-traversal-") as tmp:
        root = Path(tmp)
        store = root / "store"
        store.mkdir()
        (root / "planted").write_bytes(b"RIFF-not-yours")
        (root / "x").mkdir()
        (root / "x" / "reference.wav").write_bytes(b"RIFF-not-yours-either")
        before = _snapshot(root)
        probes, bypasses = 0, []
        env = {"TTS_ENGINE": "espeak", "TTS_VOICES_DIR": str(store)}
        with ServiceProcess("tts", env=env, label="soak-traversal-tts") as tts:
            async with httpx.AsyncClient(base_url=tts.url, timeout=30) as client:
                for voice_id in TRAVERSAL_IDS:
                    for method in ("GET", "DELETE"):
                        probes += 1
                        status = await asyncio.to_thread(raw_request, tts.port, method, "/v1/voices/" + voice_id)
                        if status < 300 and voice_id not in ("", "."):
                            bypasses.append(f"{method} /v1/voices/{voice_id!r} → {status}")
                    probes += 1
                    response = await client.post(
                        "/v1/voices", files={"file": ("r.wav", b"RIFF", "audio/wav")}, data={"id": voice_id}
                    )
                    if response.status_code < 300:
                        bypasses.append(f"POST /v1/voices id={voice_id!r} → {response.status_code}")
                    probes += 1
                    response = await client.post("/v1/audio/speech", json={"input": "hi", "voice": voice_id})
                    if response.status_code < 300 and voice_id not in ("", "."):
                        bypasses.append(f"POST /v1/audio/speech voice={voice_id!r} → {response.status_code}")
            async with websockets.connect(tts.ws_url + "/v1/tts/stream", max_size=None) as ws:
                await ws.recv()
                for voice_id in TRAVERSAL_IDS:
                    for message in (
                        {"type": "synthesize", "text": "hi", "voice_id": voice_id},
                        {"type": "config", "voice_id": voice_id},
                        {"type": "register_voice", "voice_id": voice_id, "reference_audio": "UklGRg=="},
                    ):
                        probes += 1
                        await ws.send(dumps(message))
                        await ws.send(dumps({"type": "__sentinel__"}))
                        while True:
                            raw = await asyncio.wait_for(ws.recv(), 30)
                            if isinstance(raw, bytes):
                                continue
                            event = json.loads(raw)
                            if event.get("type") == "error" and "__sentinel__" in str(event.get("message")):
                                break
                            if event.get("type") in ("synthesis_complete", "voice_registered") and voice_id:
                                bypasses.append(f"WS {message['type']} voice_id={voice_id!r} → {event['type']}")
        after = _snapshot(root)
        changed = sorted(set(before.items()) ^ set(after.items()))
        return {
            "probes": probes,
            "bypasses": bypasses,
            "outside_store_changed": [name for name, _ in changed],
            "store_parent_exists": root.exists(),  # noqa: ASYNC240 (a harness, one stat)
        }


async def run(s, hours: float) -> dict:
    return {"bombs": await asyncio.to_thread(bombs, s, hours), "traversal": await traversal()}
