"""What every part of the reliability harness shares: the stack it starts, process probes, and a
few wire helpers. Services are started through tests/helpers (one process launcher for the
project); nothing here mocks a component of ours."""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.helpers.procs import ServiceProcess
from tests.helpers.stack import Stack, agent_stack

OUT = Path(__file__).resolve().parents[1] / "out"
# For a leak check, RSS must follow live memory. glibc's does not: once a large block is freed, its
# dynamic mmap threshold rises (up to 32 MiB), so later large temporaries (an encoder's activations,
# tens of MiB) come from the heap, and each thread's arena keeps its high-water mark: RSS steps up by
# 10-40 MiB whenever a larger batch x window first happens, with nothing leaked (malloc_trim gives
# it back). A fixed 1 MiB threshold (larger blocks are mmap'd and unmapped when freed) and two
# arenas make RSS flat after the warm-up. It costs the ASR ~35 % CPU per final, so it is the short
# soak's setting, not the services' default (docs/reliability.md, "ASR memory").
LIVE_MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": "1048576", "MALLOC_ARENA_MAX": "2"}


@contextlib.contextmanager
def stack(label: str, **kwargs) -> Iterator[Stack]:
    """ASR (Whisper tiny.en), TTS (espeak-ng) and the orchestrator on a FakeClaude, on loopback."""
    with agent_stack(label, **kwargs) as s:
        yield s


def services(s: Stack) -> dict[str, ServiceProcess]:
    return {"asr": s.asr, "tts": s.tts, "orchestrator": s.orchestrator}


def rss_mb(service: ServiceProcess) -> float | None:
    """Resident memory of the service process (VmRSS), MiB; None when it is not running."""
    if not service.proc or service.proc.poll() is not None:
        return None
    try:
        for line in Path(f"/proc/{service.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def alive(service: ServiceProcess) -> bool:
    return service.proc is not None and service.proc.poll() is None


def healthy(service: ServiceProcess, timeout: float = 5.0) -> bool:
    try:
        return httpx.get(service.url + "/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def metric(service: ServiceProcess, name: str) -> float:
    """Sum of a Prometheus metric's samples (all label sets) from /metrics."""
    text = httpx.get(service.url + "/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            head = line.split(" ")[0]
            if head == name or head.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
    return total


def coded(payload: object) -> bool:
    """An error that tells the client what happened: a non-empty code and message."""
    if not isinstance(payload, dict):
        return False
    body = payload.get("error", payload) if isinstance(payload.get("error"), dict) else payload
    return bool(isinstance(body.get("code"), str) and body.get("code") and body.get("message"))


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


@dataclass
class Tally:
    """Outcomes for one endpoint or route."""

    sent: int = 0
    coded: int = 0
    accepted: int = 0  # no error, and none was owed (e.g. random bytes are valid PCM)
    silent: int = 0  # an error was owed and none came
    silent_cases: list[str] = field(default_factory=list)
    accepted_by: dict[str, int] = field(default_factory=dict)  # category → count (what passed as valid)
    uncoded: list[str] = field(default_factory=list)  # answers without a code + message
    server_errors: int = 0  # 5xx / `internal`
    unexpected_closes: list[str] = field(default_factory=list)
    deaths: int = 0
    codes: dict[str, int] = field(default_factory=dict)

    def accept(self, category: str) -> None:
        self.accepted += 1
        self.accepted_by[category] = self.accepted_by.get(category, 0) + 1

    def code(self, code: str) -> None:
        self.coded += 1
        self.codes[code] = self.codes.get(code, 0) + 1


async def recv(ws, timeout: float = 30.0):
    return await asyncio.wait_for(ws.recv(), timeout)


def dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


class Clock:
    """Monotonic seconds since the part started (for the report's timelines)."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self) -> float:
        return round(time.monotonic() - self.t0, 2)
