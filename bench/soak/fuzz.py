"""Fuzz: N malformed messages per WebSocket endpoint and per REST route, against the real stack.

How an answer is tied to its message without timing: after each malformed message the harness
sends a *sentinel* — a message whose answer is known (an unknown `type`) — and reads up to the
sentinel's error; what came before it is the answer to the malformed message. Twilio's protocol
has no error message, so there the answer is the bridge's counter of skipped messages
(`voice_orchestrator_twilio_bad_messages_total`) and the socket staying open until `stop`.

Categories (round-robin over N): random bytes, random JSON, wrong types, deep nesting, huge
strings, lone surrogates, NaN/Inf (in JSON and as float audio), odd-length PCM, and messages after
`end`. Each case says whether an error is owed: random binary frames on an audio socket are valid
PCM, so there silence is the right answer.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import numpy as np
import websockets

from .common import Tally, alive, coded, dumps, healthy, metric, recv

CATEGORIES = (
    "random_bytes",
    "random_json",
    "wrong_types",
    "deep_nesting",
    "huge_string",
    "surrogates",
    "nan_inf",
    "odd_pcm",
)
WEIRD_VALUES = ("x", -1, 10**30, 1e308, [], {}, True, None, "", "\u0000", "€" * 50, [1, [2, [3]]])


@dataclass
class Case:
    category: str
    payload: str | bytes
    owed: bool = True  # an error must come back


def _random_json(rng: random.Random, depth: int = 0):
    kind = rng.randrange(6 if depth < 3 else 4)
    if kind == 0:
        return rng.randint(-(10**12), 10**12)
    if kind == 1:
        return rng.random() * 1e6
    if kind == 2:
        return "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(20)))
    if kind == 3:
        return rng.choice([True, False, None])
    if kind == 4:
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {f"k{rng.randrange(99)}": _random_json(rng, depth + 1) for _ in range(rng.randrange(4))}


def _random_text(rng: random.Random) -> str:
    return "".join(chr(rng.choice((rng.randrange(1, 0x7F), rng.randrange(0x80, 0xD7FF)))) for _ in range(64))


def json_cases(rng: random.Random, n: int, templates: list[dict], binary_owed: bool, audio_float: bool) -> list[Case]:
    """Malformed JSON-socket messages, built from the endpoint's own message `templates`."""
    cases = []
    for i in range(n):
        category = CATEGORIES[i % len(CATEGORIES)]
        template = dict(rng.choice(templates))
        if category == "random_bytes":
            if i % 2:
                cases.append(Case(category, _random_text(rng)))
            else:
                raw = rng.randbytes(rng.choice((2, 64, 640, 3200)))
                if audio_float:  # random float32 bytes decode to NaN/Inf/huge values: must be refused or tamed
                    cases.append(Case(category, raw, owed=False))
                else:
                    cases.append(Case(category, raw, owed=binary_owed))
        elif category == "random_json":
            value = _random_json(rng)
            if isinstance(value, dict) and rng.random() < 0.5:
                value["type"] = rng.choice(["", "conf", "SYNTHESIZE", 7, None, "x" * 80])
            cases.append(Case(category, json.dumps(value)))
        elif category == "wrong_types":
            fields = [k for k in template if k != "type"] or ["type"]
            template[rng.choice(fields)] = rng.choice(WEIRD_VALUES)
            if rng.random() < 0.3:
                template["type"] = rng.choice(WEIRD_VALUES[1:])
            template["unexpected_field"] = 1  # a weird value may still be a valid one: this makes it owed
            cases.append(Case(category, json.dumps(template)))
        elif category == "deep_nesting":
            depth = rng.choice((200, 2000, 10000))
            cases.append(Case(category, '{"type":"config","x":' + "[" * depth + "]" * depth + "}"))
        elif category == "huge_string":
            size = rng.choice((300_000, 1_500_000))  # inside, then past MAX_FRAME_BYTES (1 MiB)
            key = next((k for k in template if k != "type"), "text")
            template[key] = "a" * size
            if "type" not in template or template["type"] in ("config",):
                template["unexpected_field"] = True
            cases.append(Case(category, json.dumps(template)))
        elif category == "surrogates":
            key = next((k for k in template if k != "type"), "text")
            raw = json.dumps({**template, key: "PLACEHOLDER"}).replace('"PLACEHOLDER"', rng.choice(SURROGATES))
            cases.append(Case(category, raw))
        elif category == "nan_inf":
            if audio_float and i % 2:
                bad = np.array([np.nan, np.inf, -np.inf, 1e30] * 160, dtype="<f4").tobytes()
                cases.append(Case(category, bad))
            else:
                key = next((k for k in template if k != "type"), "text")
                raw = json.dumps({**template, key: 0}).replace(f'"{key}": 0', f'"{key}": ' + rng.choice(NANS))
                cases.append(Case(category, raw))
        elif category == "odd_pcm":
            width = 4 if audio_float else 2
            raw = rng.randbytes(rng.choice((1, 3, 5, 641)) * (1 if width == 2 else 1))
            if len(raw) % width == 0:
                raw += b"\x00"
            cases.append(Case(category, raw, owed=binary_owed or audio_float))
    return cases


SURROGATES = ('"\\ud800"', '"a\\udfffb"', '"\\udc00\\ud800"', '"\\ud83d"')
NANS = ("NaN", "Infinity", "-Infinity", "1e999")


# ---------------------------------------------------------------- JSON sockets (ASR, TTS)
SENTINEL = dumps({"type": "__sentinel__"})


async def _until_sentinel(ws, tally: Tally, case: Case, skip: Callable[[object], bool]) -> None:
    """Reads the answer to `case`, up to the sentinel's unknown_type error."""
    errors = []
    while True:
        raw = await recv(ws, 60)
        if isinstance(raw, bytes):
            continue
        event = json.loads(raw)
        if skip(event):
            continue
        if event.get("type") == "error":
            if event.get("code") == "unknown_type" and "__sentinel__" in str(event.get("message")):
                break
            errors.append(event)
    for event in errors:
        if coded(event):
            tally.code(event["code"])
        else:
            tally.uncoded.append(f"{case.category}: {str(event)[:120]}")
        if event.get("code") == "internal":
            tally.server_errors += 1
    if not errors:
        if case.owed:
            tally.silent += 1
            tally.silent_cases.append(f"{case.category}: {str(case.payload)[:60]!r}")
        else:
            tally.accept(case.category)


async def fuzz_json_socket(
    url: str, cases: list[Case], first: list[str], after_end: list[str], skip=lambda e: False
) -> Tally:
    tally = Tally()
    try:
        async with websockets.connect(url, max_size=None, open_timeout=30) as ws:
            ready = json.loads(await recv(ws))
            assert ready.get("type") == "ready", ready
            for message in first:
                await ws.send(message)
            for case in cases:
                tally.sent += 1
                await ws.send(case.payload)
                await ws.send(SENTINEL)
                await _until_sentinel(ws, tally, case, skip)
            # messages after `end`: an error each, or the normal close the `end` asked for (ASR)
            await ws.send(dumps({"type": "end"}))
            for message in after_end:
                tally.sent += 1
                case = Case("after_end", message, owed=True)
                try:
                    await ws.send(message)
                    await ws.send(SENTINEL)
                    await _until_sentinel(ws, tally, case, skip)
                except websockets.ConnectionClosedOK:
                    tally.accepted += 1  # closed with 1000 after `end`, as asked
    except websockets.ConnectionClosed as exc:
        tally.unexpected_closes.append(f"{exc.rcvd.code if exc.rcvd else 'no close frame'} {exc}"[:160])
    except (asyncio.TimeoutError, OSError) as exc:
        tally.unexpected_closes.append(f"{type(exc).__name__}")
    return tally


ASR_TEMPLATES = [
    {"type": "config", "sample_rate": 16000, "encoding": "pcm_f32le", "language": "en"},
    {"type": "config", "turn_detection": {"mode": "vad", "stop_secs": 0.2}},
    {"type": "flush"},
    {"type": "keepalive"},
]
TTS_TEMPLATES = [
    {"type": "synthesize", "text": "Hello.", "voice_id": "default", "request_id": "r1"},
    {"type": "config", "sample_rate": 24000, "encoding": "pcm_s16le", "exaggeration": 0.5},
    {"type": "text", "text": "Hi", "request_id": "t1"},
    {"type": "cancel", "request_id": "zz"},
    {"type": "register_voice", "voice_id": "v1", "reference_audio": "AAAA"},
]


async def fuzz_asr(s, rng: random.Random, n: int) -> Tally:
    cases = json_cases(rng, n, ASR_TEMPLATES, binary_owed=False, audio_float=True)
    config = dumps({"type": "config", "encoding": "pcm_f32le", "turn_detection": {"mode": "none"}})
    after = [dumps({"type": "flush"}), b"\x00\x00" * 10, dumps({"type": "config"})]

    def skip(event):
        return event.get("type") not in ("error",)

    return await fuzz_json_socket(s.asr.ws_url + "/v1/asr/stream", cases, [config], after, skip)


async def fuzz_tts(s, rng: random.Random, n: int) -> Tally:
    cases = json_cases(rng, n, TTS_TEMPLATES, binary_owed=True, audio_float=False)
    # the session's answer to a *valid* message is audio + synthesis_complete: not an error, skipped
    # TTS `end` ends a request, not the session: what follows refers to a request no longer open
    after = [dumps({"type": "end"}), dumps({"type": "flush"}), dumps({"type": "cancel", "request_id": "r1"})]

    def skip(event):
        return event.get("type") != "error"

    return await fuzz_json_socket(s.tts.ws_url + "/v1/tts/stream", cases, [], after, skip)


# ---------------------------------------------------------------- the agent socket (binary frames)
def frame(kind: int, payload: bytes = b"", flags: int = 0) -> bytes:
    return bytes([kind, flags]) + payload


AGENT_SENTINEL = frame(0xEE)


def agent_cases(rng: random.Random, n: int) -> list[Case]:
    cases = []
    for i in range(n):
        category = CATEGORIES[i % len(CATEGORIES)]
        if category == "random_bytes":
            raw = rng.randbytes(rng.choice((0, 1, 7, 300)))
            # a random frame that happens to be even-length audio is valid: no error owed
            owed = not (len(raw) >= 2 and raw[0] == 0x02 and (len(raw) - 2) % 2 == 0) and not (raw[:1] == b"\x03")
            cases.append(Case(category, raw, owed=owed))
        elif category == "random_json":
            cases.append(Case(category, frame(0x0A, json.dumps(_random_json(rng)).encode())))
        elif category == "wrong_types":
            value = rng.choice(WEIRD_VALUES)
            owed = not isinstance(value, str) or not value.strip()  # "x", "€€€", even "\u0000" is a typed turn
            event = frame(0x0A, json.dumps({"event": "user_text", "text": value}).encode())
            cases.append(Case(category, event, owed=owed))
        elif category == "deep_nesting":
            depth = rng.choice((200, 10000))
            cases.append(Case(category, frame(0x0A, ("[" * depth + "]" * depth).encode())))
        elif category == "huge_string":
            size = rng.choice((5000, 1_500_000))
            cases.append(Case(category, frame(0x0A, json.dumps({"event": "user_text", "text": "a" * size}).encode())))
        elif category == "surrogates":
            raw = '{"event":"user_text","text":' + rng.choice(SURROGATES) + "}"
            cases.append(Case(category, frame(0x0A, raw.encode())))
        elif category == "nan_inf":
            raw = '{"event":"user_text","text":' + rng.choice(NANS) + "}"
            cases.append(Case(category, frame(0x0A, raw.encode())))
        elif category == "odd_pcm":
            cases.append(Case(category, frame(0x02, rng.randbytes(rng.choice((1, 3, 641))))))
    return cases


async def fuzz_agent(s, rng: random.Random, n: int) -> Tally:
    tally = Tally()
    url = s.orchestrator.ws_url + "/v1/agent/stream"
    try:
        async with websockets.connect(url, max_size=None, open_timeout=30) as ws:
            await ws.send(frame(0x01, dumps({"mode": "direct", "turn_detection": {"mode": "none"}}).encode()))
            while (await recv(ws, 60))[:1] != b"\x08":
                pass
            for case in agent_cases(rng, n) + [Case("after_end", "text frame after audio_end")]:
                tally.sent += 1
                if case.category == "after_end":
                    await ws.send(frame(0x03))
                await ws.send(case.payload)
                await ws.send(AGENT_SENTINEL)
                errors = []
                while True:
                    raw = await recv(ws, 60)
                    if not isinstance(raw, bytes) or raw[:1] != b"\x07":
                        continue
                    event = json.loads(raw[2:])
                    if event.get("code") == "unknown_type" and "0xee" in str(event.get("message")).lower():
                        break
                    errors.append(event)
                for event in errors:
                    if event.get("code", "").startswith(("asr_", "tts_", "llm_")):
                        continue  # the pipeline's own news (e.g. an empty turn), not an answer to this frame
                    tally.code(event["code"]) if coded(event) else tally.uncoded.append(f"{case.category}: {event}")
                    if event.get("code") == "internal":
                        tally.server_errors += 1
                if not errors and case.owed:
                    tally.silent += 1
                    tally.silent_cases.append(f"{case.category}: {case.payload[:40]!r}")
                elif not errors:
                    tally.accept(case.category)
    except websockets.ConnectionClosed as exc:
        tally.unexpected_closes.append(f"{exc.rcvd.code if exc.rcvd else 'no close frame'} {exc}"[:160])
    except (asyncio.TimeoutError, OSError) as exc:
        tally.unexpected_closes.append(type(exc).__name__)
    return tally


# ---------------------------------------------------------------- Twilio Media Streams
def twilio_cases(rng: random.Random, n: int) -> list[Case]:
    cases = []
    for i in range(n):
        category = CATEGORIES[i % len(CATEGORIES)]
        if category == "random_bytes":
            cases.append(Case(category, rng.randbytes(50) if i % 2 else _random_text(rng)))
        elif category == "random_json":
            cases.append(Case(category, json.dumps(_random_json(rng))))
        elif category == "wrong_types":
            value = rng.choice([v for v in WEIRD_VALUES if v != ""])  # "" is valid base64 (no audio)
            message = {"event": "media", "streamSid": "MZ1", "media": {"payload": value}}
            cases.append(Case(category, json.dumps(message)))
        elif category == "deep_nesting":
            cases.append(Case(category, '{"event":"media","media":' + "[" * 5000 + "]" * 5000 + "}"))
        elif category == "huge_string":
            cases.append(Case(category, json.dumps({"event": "dtmf", "dtmf": {"digit": "1" * 300_000}})))
        elif category == "surrogates":
            cases.append(Case(category, '{"event":"mark","mark":{"name":' + rng.choice(SURROGATES) + "}}"))
        elif category == "nan_inf":
            cases.append(Case(category, '{"event":"media","media":{"payload":' + rng.choice(NANS) + "}}"))
        elif category == "odd_pcm":  # not base64 at all
            cases.append(Case(category, json.dumps({"event": "media", "media": {"payload": "%%%not base64"}})))
    return cases


async def fuzz_twilio(s, rng: random.Random, n: int) -> Tally:
    tally = Tally()
    orch = s.orchestrator
    before = metric(orch, "voice_orchestrator_twilio_bad_messages_total")
    cases = twilio_cases(rng, n)
    try:
        async with websockets.connect(orch.ws_url + "/twilio/media", max_size=None, open_timeout=30) as ws:
            await ws.send(dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
            start = {
                "event": "start",
                "sequenceNumber": "1",
                "streamSid": "MZ" + "0" * 32,
                "start": {
                    "streamSid": "MZ" + "0" * 32,
                    "callSid": "CA" + "0" * 32,
                    "accountSid": "AC" + "0" * 32,
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    "customParameters": {"mode": "direct"},
                },
            }
            await ws.send(dumps(start))
            silence = base64.b64encode(b"\xff" * 160).decode()
            counted = before
            for case in cases:
                tally.sent += 1
                await ws.send(case.payload)
                await ws.send(TWILIO_SENTINEL)  # skipped and counted: the case's count is the rest
                counted, skipped = await _twilio_count(orch, counted)
                if skipped >= 2:
                    tally.code("twilio_bad_message (counted + logged)")
                else:
                    tally.silent += 1
                    tally.silent_cases.append(f"{case.category}: {str(case.payload)[:60]!r}")
                await ws.send(dumps({"event": "media", "streamSid": start["streamSid"], "media": {"payload": silence}}))
            tally.sent += 1  # after `stop`: the call is over; the bridge closes normally
            await ws.send(dumps({"event": "stop", "streamSid": start["streamSid"]}))
            try:
                await ws.send(dumps({"event": "media", "media": {"payload": silence}}))
                while True:
                    await recv(ws, 60)
            except websockets.ConnectionClosedOK:
                pass
    except websockets.ConnectionClosed as exc:
        tally.unexpected_closes.append(f"{exc.rcvd.code if exc.rcvd else 'no close frame'} {exc}"[:160])
    except (asyncio.TimeoutError, OSError) as exc:
        tally.unexpected_closes.append(type(exc).__name__)
    return tally


TWILIO_SENTINEL = dumps({"event": "__sentinel__"})
BAD_TOTAL = "voice_orchestrator_twilio_bad_messages_total"


async def _twilio_count(orch, counted: float, patience_s: float = 5.0) -> tuple[float, int]:
    """Waits until the bridge has counted the case and the sentinel (2 more), or `patience_s`
    passes with only the sentinel's 1: Twilio has no reply to wait for, only this counter."""
    deadline = asyncio.get_running_loop().time() + patience_s
    while True:
        now = await asyncio.to_thread(metric, orch, BAD_TOTAL)
        if now - counted >= 2 or asyncio.get_running_loop().time() > deadline:
            return now, int(now - counted)
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------- REST
def _wav(rng: random.Random) -> bytes:
    data = rng.randbytes(3200)
    fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def rest_cases(rng: random.Random, n: int, base: dict[str, str]) -> dict[str, list[tuple[str, dict]]]:
    """route label → [(category, httpx.request kwargs)]."""
    asr, tts, orch = base["asr"], base["tts"], base["orchestrator"]
    routes: dict[str, list[tuple[str, dict]]] = {
        "POST /v1/audio/transcriptions": [],
        "POST /v1/audio/speech": [],
        "POST /v1/voices": [],
        "GET|DELETE /v1/voices/{id}": [],
        "POST /twilio/voice": [],
    }
    weird_ids = ["..", "%2e%2e", "voice%0a", "a" * 300, "%00", "..%2f..%2fetc", "é", "%ed%a0%80", "x/../..", "-"]
    for i in range(n):
        category = CATEGORIES[i % len(CATEGORIES)]
        junk = rng.randbytes(rng.choice((0, 10, 5000)))
        # ASR upload
        if category in ("random_bytes", "odd_pcm"):
            req = {"files": {"file": ("a.wav", junk + (b"\x00" if category == "odd_pcm" else b""), "audio/wav")}}
        elif category == "wrong_types":
            req = {
                "files": {"file": ("a.wav", _wav(rng), "audio/wav")},
                "data": {"model": "x", "temperature": "hot", "response_format": rng.choice(["xml", "", "€"])},
            }
        elif category == "huge_string":
            req = {"files": {"file": ("a.wav", _wav(rng), "audio/wav")}, "data": {"prompt": "p" * 200_000}}
        elif category == "surrogates":
            # a lone surrogate as it arrives on the wire: CESU-8 bytes, invalid UTF-8
            req = {"files": {"file": ("a.wav", _wav(rng), "audio/wav")}, "data": {"language": b"\xed\xa0\x80"}}
        elif category == "nan_inf":
            req = {"files": {"file": ("a.wav", _wav(rng), "audio/wav")}, "data": {"temperature": "NaN"}}
        else:
            content_type = rng.choice(["application/json", "multipart/form-data"])
            req = {"content": junk, "headers": {"content-type": content_type}}
        route = {"method": "POST", "url": asr + "/v1/audio/transcriptions", **req}
        routes["POST /v1/audio/transcriptions"].append((category, route))
        # TTS speech (JSON)
        if category == "random_bytes":
            body = {"content": junk, "headers": {"content-type": "application/json"}}
        elif category == "random_json":
            body = {"content": json.dumps(_random_json(rng)).encode()}
        elif category == "wrong_types":
            body = {"json": {"input": rng.choice(WEIRD_VALUES), "voice": rng.choice(WEIRD_VALUES), "speed": "x"}}
        elif category == "deep_nesting":
            body = {"content": ('{"input":' + "[" * 10000 + "]" * 10000 + "}").encode()}
        elif category == "huge_string":
            body = {"json": {"input": "a" * 200_000, "voice": "default"}}
        elif category == "surrogates":
            body = {"content": ('{"input":"hi","voice":' + rng.choice(SURROGATES) + "}").encode()}
        elif category == "nan_inf":
            body = {"content": ('{"input":"hi","speed":' + rng.choice(NANS) + "}").encode()}
        else:
            body = {"json": {"input": "hi", "response_format": "wav", "speed": rng.choice([0, -1, 1e9])}}
        routes["POST /v1/audio/speech"].append((category, {"method": "POST", "url": tts + "/v1/audio/speech", **body}))
        # voice upload
        routes["POST /v1/voices"].append(
            (
                category,
                {
                    "method": "POST",
                    "url": tts + "/v1/voices",
                    "files": {"file": ("r.wav", junk, "audio/wav")},
                    "data": {"id": rng.choice(weird_ids), "name": "n" * rng.choice((1, 5000))},
                },
            )
        )
        # voice ids
        method = "GET" if i % 2 else "DELETE"
        routes["GET|DELETE /v1/voices/{id}"].append(
            (category, {"method": method, "url": tts + "/v1/voices/" + weird_ids[i % len(weird_ids)]})
        )
        # Twilio webhook
        routes["POST /twilio/voice"].append(
            (
                category,
                {
                    "method": "POST",
                    "url": orch + "/twilio/voice",
                    "content": junk,
                    "headers": {"content-type": "application/x-www-form-urlencoded"},
                },
            )
        )
    return routes


def fuzz_rest(s, rng: random.Random, n: int) -> dict[str, Tally]:
    base = {"asr": s.asr.url, "tts": s.tts.url, "orchestrator": s.orchestrator.url}
    tallies: dict[str, Tally] = {}
    with httpx.Client(timeout=60) as client:
        for route, cases in rest_cases(rng, n, base).items():
            tally = tallies[route] = Tally()
            for category, kwargs in cases:
                tally.sent += 1
                try:
                    response = client.request(**kwargs)
                except httpx.HTTPError as exc:
                    tally.unexpected_closes.append(f"{category}: {type(exc).__name__}")
                    continue
                if response.status_code < 400:
                    tally.accept(category)
                    continue
                try:
                    body = response.json()
                except ValueError:
                    body = None
                if coded(body):
                    tally.code(f"{response.status_code} {body['error']['code']}")
                else:
                    tally.uncoded.append(f"{category}: {response.status_code} {response.text[:80]!r}")
                if response.status_code >= 500 and response.status_code != 503:
                    tally.server_errors += 1
    return tallies


async def run(s, n: int, seed: int = 9) -> dict[str, Tally]:
    """Every endpoint, one after the other; after each, the services must be alive and healthy."""
    rng = random.Random(seed)
    results: dict[str, Tally] = {}
    for name, fn in (
        ("WS /v1/asr/stream", fuzz_asr),
        ("WS /v1/tts/stream", fuzz_tts),
        ("WS /v1/agent/stream", fuzz_agent),
        ("WS /twilio/media", fuzz_twilio),
    ):
        results[name] = await fn(s, rng, n)
        _deaths(s, results[name])
    rest = await asyncio.to_thread(fuzz_rest, s, rng, n)
    for name, tally in rest.items():
        _deaths(s, tally)
        results[name] = tally
    return results


def _deaths(s, tally: Tally) -> None:
    for service in (s.asr, s.tts, s.orchestrator):
        if not alive(service) or not healthy(service):
            tally.deaths += 1
