"""The real nginx (Debian package) with the rendered deploy config, in front of two ASR and two TTS
processes on loopback: routing, WebSocket upgrade, sticky sessions by session key, TLS, the upload
cap, and failover when a replica stops.

Where a request went is read from two independent places: nginx's access log (the replica it
picked, one JSON line per request/session) and the replicas' own /metrics (audio seconds each one
received), so "every frame of a session reached one replica" is checked on the receiving side.
"""

from __future__ import annotations

import asyncio
import io
import json
import ssl
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from deploy.nginx.render import Settings
from services.common.audio import decode_file, encode, wav_bytes
from services.common.protocol.agent import FrameType, pack, unpack
from tests.deploy.gateway import Gateway, final_upstream
from tests.helpers.fake_twilio import FakeCall, parse_twiml, webhook
from tests.helpers.procs import ARTIFACTS, ServiceProcess, free_port
from tests.helpers.speech import concat, silence, speak

RATE = 16000
FRAME = 320  # 20 ms at 16 kHz
TWILIO_TOKEN = "nginx-test-twilio-token"


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def certificate():
    """A self-signed certificate for 127.0.0.1 / localhost, made with openssl for this run."""
    folder = ARTIFACTS / "nginx-tls"
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def replicas(models_dir, espeak):
    """Two ASR and two TTS processes, started together (their model loads overlap)."""
    asr_env = {"ASR_TEMPERATURES": "0.0", "ASR_CPU_THREADS": "1", "ASR_TURN_THREADS": "1"}
    procs = {
        "asr": [ServiceProcess("asr", asr_env, label=f"deploy-asr-{i}") for i in (1, 2)],
        "tts": [
            ServiceProcess(
                "tts", {"TTS_ENGINE": "espeak", "TTS_VOICES_DIR": str(ARTIFACTS / f"deploy-tts-{i}-voices")},
                label=f"deploy-tts-{i}",
            )
            for i in (1, 2)
        ],
    }  # fmt: skip
    # one orchestrator (no models: it starts in a second) with the Twilio bridge's signature check on;
    # it reaches ASR/TTS directly, the point here is the routes nginx sends to it
    procs["orchestrator"] = [
        ServiceProcess(
            "orchestrator",
            {
                "ASR_URL": procs["asr"][1].ws_url,
                "TTS_URL": procs["tts"][1].ws_url,
                "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
                "ANTHROPIC_API_KEY": "",
            },
            label="deploy-orchestrator",
        )
    ]
    everything = procs["asr"] + procs["tts"] + procs["orchestrator"]
    try:
        for proc in everything:
            proc.start(wait="")
        with ThreadPoolExecutor(len(everything)) as pool:
            list(pool.map(lambda p: p.wait_for("/ready", 180.0), everything))
        yield procs
    finally:
        for proc in everything:
            proc.stop()


@pytest.fixture(scope="module")
def gateway(replicas, certificate):
    cert, key = certificate
    settings = Settings(
        asr=tuple(f"127.0.0.1:{p.port}" for p in replicas["asr"]),
        tts=tuple(f"127.0.0.1:{p.port}" for p in replicas["tts"]),
        orchestrator=tuple(f"127.0.0.1:{p.port}" for p in replicas["orchestrator"]),
        tls_cert=str(cert),
        tls_key=str(key),
        client_max_body_size="2m",
    )
    gw = Gateway(settings, label="deploy-nginx").start()
    yield gw
    gw.stop()


def addr(proc: ServiceProcess) -> str:
    return f"127.0.0.1:{proc.port}"


def audio_seconds(proc: ServiceProcess) -> float:
    """Seconds of audio this ASR replica has received (voice_asr_audio_seconds_total, all sources)."""
    text = httpx.get(proc.url + "/metrics", timeout=5).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "voice_asr_audio_seconds_total"
    )


def tls_context(certificate) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


def speech_pcm() -> bytes:
    return encode(concat(speak("Routing check, one two three."), silence(0.6)), "pcm_s16le")


async def asr_session(url: str, pcm: bytes = b"", ssl_context: ssl.SSLContext | None = None) -> list[dict]:
    """One ASR WebSocket session: config, the audio in 20 ms frames, end; every event until close."""
    events: list[dict] = []
    async with connect(url, ssl=ssl_context, max_size=None) as ws:
        await ws.send(json.dumps({"type": "config", "sample_rate": RATE, "encoding": "pcm_s16le"}))
        for i in range(0, len(pcm), FRAME * 2):
            await ws.send(pcm[i : i + FRAME * 2])
        await ws.send(json.dumps({"type": "end"}))
        async for message in ws:
            assert isinstance(message, str), "the ASR stream only sends JSON events"
            events.append(json.loads(message))
    return events


def by_key(gw: Gateway, key: str, count: int = 1) -> list[dict]:
    return gw.wait_entries(lambda e: e["sticky_key"] == key, count)


# ------------------------------------------------------------------ tests
async def test_websocket_session_reaches_one_replica(gateway, replicas):
    asr = replicas["asr"]
    before = {p.port: audio_seconds(p) for p in asr}
    pcm = speech_pcm()
    key = f"call-{uuid.uuid4().hex[:8]}"
    events = await asr_session(f"{gateway.ws}/v1/asr/stream?session={key}", pcm)

    assert events[0]["type"] == "ready"
    assert {e["session_id"] for e in events} == {events[0]["session_id"]}, "one session, one session_id"
    assert any(e["type"] == "final" for e in events), [e["type"] for e in events]

    (entry,) = by_key(gateway, key)
    assert entry["status"] == "101" and entry["uri"] == "/v1/asr/stream"
    chosen = final_upstream(entry)
    assert chosen in {addr(p) for p in asr}

    # the receiving side: the chosen replica got every sample, the other none
    sent_seconds = len(pcm) / 2 / RATE
    for p in asr:
        delta = audio_seconds(p) - before[p.port]
        expected = sent_seconds if addr(p) == chosen else 0.0
        assert delta == pytest.approx(expected, abs=1e-3), (addr(p), chosen, delta)


async def test_session_keys_spread_and_stick(gateway, replicas):
    tts_addrs = {addr(p) for p in replicas["tts"]}
    keys = [f"user-{i}-{uuid.uuid4().hex[:6]}" for i in range(24)]
    async with httpx.AsyncClient(timeout=10) as client:
        for key in keys:
            assert (await client.get(f"{gateway.http}/v1/voices", params={"session": key})).status_code == 200
            # the same key as a header lands on the same replica as the query argument
            assert (await client.get(f"{gateway.http}/v1/voices", headers={"X-Session-Key": key})).status_code == 200
    placement = {}
    for key in keys:
        entries = by_key(gateway, key, count=2)
        assert len(entries) == 2
        chosen = {final_upstream(e) for e in entries}
        assert len(chosen) == 1, f"key {key} went to {chosen}"
        placement[key] = chosen.pop()
    assert set(placement.values()) == tts_addrs, "24 keys all hashed to one replica"

    # WebSocket sessions spread too, and a key's second session goes where its first went
    asr_addrs = {addr(p) for p in replicas["asr"]}
    ws_keys = [f"ws-{i}-{uuid.uuid4().hex[:6]}" for i in range(12)]
    for key in ws_keys + ws_keys[:3]:
        events = await asr_session(f"{gateway.ws}/v1/asr/stream?session={key}")
        assert events[0]["type"] == "ready"
    ws_placement = {}
    for key in ws_keys:
        chosen = {final_upstream(e) for e in by_key(gateway, key, count=2 if key in ws_keys[:3] else 1)}
        assert len(chosen) == 1, f"key {key} went to {chosen}"
        ws_placement[key] = chosen.pop()
    assert set(ws_placement.values()) == asr_addrs


async def test_without_a_key_rest_sticks_to_the_address_and_streams_spread(gateway, replicas):
    """No key: plain HTTP hashes on the full client address (on loopback: one replica for all),
    a WebSocket on its random Sec-WebSocket-Key (keyless streams from one address still spread)."""
    marker = uuid.uuid4().hex
    async with httpx.AsyncClient(timeout=10) as client:
        for i in range(6):
            response = await client.get(f"{gateway.http}/v1/audio/voices", params={"n": f"{marker}-{i}"})
            assert response.status_code == 200
    entries = gateway.wait_entries(lambda e: e["uri"] == "/v1/audio/voices" and e["sticky_key"] == "127.0.0.1", 6)
    assert len({final_upstream(e) for e in entries[-6:]}) == 1

    seen_before = len(gateway.entries())
    for _ in range(12):
        assert (await asr_session(f"{gateway.ws}/v1/asr/stream"))[0]["type"] == "ready"
    fresh = gateway.wait_entries(lambda e: True, seen_before + 12)[seen_before:]
    assert len(fresh) == 12 and all(e["uri"] == "/v1/asr/stream" for e in fresh)
    assert all(e["sticky_key"] not in ("", "127.0.0.1") for e in fresh), "a WebSocket's own key is the key"
    assert {final_upstream(e) for e in fresh} == {addr(p) for p in replicas["asr"]}


def test_rest_transcription_and_speech_through_nginx(gateway, replicas):
    client = OpenAI(base_url=f"{gateway.http}/v1", api_key="unused", max_retries=0)
    clip = concat(speak("Transcribe me through the proxy."), silence(0.3))
    result = client.audio.transcriptions.create(
        file=("clip.wav", io.BytesIO(wav_bytes(clip, RATE)), "audio/wav"),
        model="whisper-1",
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert isinstance(result.text, str)
    assert result.duration == pytest.approx(len(clip) / RATE, abs=0.05)

    voices = httpx.get(f"{gateway.http}/v1/voices", timeout=10).json()
    voice_ids = [v["id"] for v in voices["data"]]
    assert voice_ids, voices
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice=voice_ids[0], input="Hello from behind nginx.", response_format="wav"
    ) as response:
        assert response.headers.get("content-length") is None, "speech must stream, not be buffered whole"
        audio = decode_file(response.read(), 24000)
    assert len(audio) > 0.3 * 24000 and np.max(np.abs(audio)) > 0.01

    # nothing answers as /metrics at the public entry point (replicas are scraped directly)
    assert httpx.get(f"{gateway.http}/metrics", timeout=5).status_code == 404
    served = {final_upstream(e) for e in gateway.entries() if e["uri"] == "/v1/audio/transcriptions"}
    assert served <= {addr(p) for p in replicas["asr"]}


def test_voice_registration_sticks_to_its_replica(gateway, replicas):
    """Without Redis each TTS replica keeps voices in its own directory: the session key is what
    makes register → use → delete land on the replica that has the voice."""
    key = f"voice-owner-{uuid.uuid4().hex[:6]}"
    voice_id = f"v{uuid.uuid4().hex[:8]}"
    reference = wav_bytes(concat(speak("This is my reference voice for cloning, hello."), silence(0.2)), 24000)
    headers = {"X-Session-Key": key}
    with httpx.Client(base_url=gateway.http, headers=headers, timeout=30) as client:
        created = client.post("/v1/voices", files={"file": ("ref.wav", reference, "audio/wav")}, data={"id": voice_id})
        assert created.status_code in (200, 201), created.text
        for _ in range(3):
            assert client.get(f"/v1/voices/{voice_id}").status_code == 200
        assert client.delete(f"/v1/voices/{voice_id}").status_code in (200, 204)
    assert len({final_upstream(e) for e in by_key(gateway, key, count=5)}) == 1


def test_upload_cap_is_enforced_at_the_entry_point(gateway):
    big = b"\0" * (3 * 1024 * 1024)  # over the 2m the gateway fixture configures
    response = httpx.post(
        f"{gateway.http}/v1/audio/transcriptions",
        params={"session": "too-big"},
        files={"file": ("big.wav", big, "audio/wav")},
        data={"model": "whisper-1"},
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    (entry,) = by_key(gateway, "too-big")
    assert entry["upstream"] == "", "the oversize upload never reached a replica"


async def test_https_and_wss_with_self_signed_certificate(gateway, certificate):
    context = tls_context(certificate)
    async with httpx.AsyncClient(verify=context, timeout=10) as client:
        response = await client.get(f"{gateway.https}/v1/voices", params={"session": "tls-rest"})
    assert response.status_code == 200
    events = await asr_session(f"{gateway.wss}/v1/asr/stream?session=tls-ws", ssl_context=context)
    assert events[0]["type"] == "ready"
    (entry,) = by_key(gateway, "tls-ws")
    assert entry["scheme"] == "https" and entry["status"] == "101"
    with pytest.raises(httpx.ConnectError):  # the certificate is checked, not ignored
        async with httpx.AsyncClient(timeout=10) as client:
            await client.get(f"{gateway.https}/v1/voices")


async def test_orchestrator_routes_page_agent_stream_and_twilio(gateway, certificate):
    async with httpx.AsyncClient(timeout=10) as client:
        page = await client.get(f"{gateway.http}/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]

    async with connect(f"{gateway.ws}/v1/agent/stream?session=agent-1") as ws:
        await ws.send(pack(FrameType.AUDIO_START, {"mode": "direct"}))
        first = unpack(await ws.recv())
    assert first.type == FrameType.READY, first

    # Twilio through the TLS entry point: the bridge rebuilds the public URL from the forwarded
    # headers nginx sets, so the signature over https://127.0.0.1:PORT/twilio/voice validates and
    # the TwiML points Twilio at wss:// on the same public host
    context = tls_context(certificate)
    public = gateway.https
    response = await webhook(public, TWILIO_TOKEN, verify=context)
    assert response.status_code == 200, response.text
    assert parse_twiml(response.text).stream_url == f"{gateway.wss}/twilio/media"
    assert (await webhook(public, TWILIO_TOKEN, signature="bm8=", verify=context)).status_code == 403

    call = FakeCall(f"{gateway.wss}/twilio/media", TWILIO_TOKEN, ssl_context=context)
    await call.open()
    await asyncio.sleep(0.5)
    assert not call.closed.is_set(), (call.close_code, call.close_reason)
    await call.stop()
    assert call.closed_by_server and call.close_code == 1000
    refused = FakeCall(f"{gateway.wss}/twilio/media", "wrong-token", ssl_context=context)
    await refused.open(start=False)
    await asyncio.wait_for(refused.closed.wait(), 10)
    assert refused.close_code == 1008


def test_container_health_check_reports_readiness(replicas):
    """deploy/healthcheck.py (the images' HEALTHCHECK) against a live replica and a closed port."""
    script = str(ARTIFACTS.parent.parent / "deploy" / "healthcheck.py")
    live = subprocess.run([sys.executable, script, str(replicas["tts"][0].port)], timeout=30)
    dead = subprocess.run([sys.executable, script, str(free_port())], timeout=30)
    assert (live.returncode, dead.returncode) == (0, 1)


async def test_stopped_replica_sends_new_sessions_to_the_other(gateway, replicas):
    """Runs last in this module: it stops one ASR replica for good."""
    asr = replicas["asr"]
    keys = [f"failover-{i}-{uuid.uuid4().hex[:6]}" for i in range(10)]
    for key in keys:
        assert (await asr_session(f"{gateway.ws}/v1/asr/stream?session={key}"))[0]["type"] == "ready"
    placement = {key: final_upstream(by_key(gateway, key)[0]) for key in keys}
    assert len(set(placement.values())) == 2, "want keys on both replicas before stopping one"

    victim, survivor = asr
    assert victim.stop() is not None
    moved = [k for k in keys if placement[k] == addr(victim)]
    stayed = [k for k in keys if placement[k] == addr(survivor)]
    pcm = speech_pcm()
    for i, key in enumerate(moved + stayed):
        # every session opens; the first one also transcribes speech end to end
        events = await asr_session(f"{gateway.ws}/v1/asr/stream?session={key}", pcm if i == 0 else b"")
        assert events[0]["type"] == "ready"
        assert i > 0 or any(e["type"] == "final" for e in events)
    for key in moved + stayed:
        latest = by_key(gateway, key, count=2)[-1]
        assert final_upstream(latest) == addr(survivor), latest
    # consistent hashing: keys that were on the survivor did not move
    assert all(final_upstream(by_key(gateway, k, count=2)[-1]) == placement[k] for k in stayed)

    # REST follows the same rule
    clip = wav_bytes(concat(speak("Still here."), silence(0.2)), RATE)
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(
            f"{gateway.http}/v1/audio/transcriptions",
            params={"session": moved[0] if moved else keys[0]},
            files={"file": ("clip.wav", clip, "audio/wav")},
            data={"model": "whisper-1"},
        )
    assert response.status_code == 200, response.text

    # no ASR replica left: nginx answers itself, in the services' JSON error shape
    survivor.stop()
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            f"{gateway.http}/v1/audio/transcriptions", files={"file": ("clip.wav", clip, "audio/wav")}
        )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "unavailable" and response.headers["retry-after"]
