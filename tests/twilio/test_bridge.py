"""The Twilio bridge, driven by a fake Twilio that plays Twilio's side exactly (tests/helpers/
fake_twilio.py) against the real orchestrator, ASR (Whisper tiny.en, real Smart Turn + Silero) and
TTS (espeak), with a fake Claude behind the real anthropic SDK.

Asserted: the webhook's TwiML, X-Twilio-Signature on the webhook and on the media WebSocket
(valid / invalid / absent), outbound media as 20 ms μ-law frames that decode to audio, marks echoed
back in order, barge-in → `clear` and a history cut at what the caller heard, keypad digits
reaching the agent as text, and a clean end on `stop` and on hang-up.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Callable

import httpx
import pytest

from services.common.audio import int16_to_float, mulaw_decode, rms_dbfs
from tests.helpers.fake_twilio import FRAME_BYTES, FakeCall, parse_twiml, sign, webhook
from tests.helpers.procs import ServiceProcess
from tests.helpers.speech import concat, silence, speak
from tests.twilio.conftest import AUTH_TOKEN, DEFAULT_REPLY

QUESTION = concat(speak("Hello, what is the weather like today?"), silence(0.2))
RATE = 16000
LONG_REPLY = (
    "Sure. Let me tell you about the weather in some detail, because there is a lot to say. "
    "In the morning it will be cloudy with a light breeze from the west. "
    "By noon the clouds clear and the temperature climbs to a pleasant level. "
    "In the evening a few showers may pass through, so keep an umbrella close by. "
    "Tomorrow looks much the same, with a little more sunshine in the afternoon."
)


async def eventually(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.05)


async def played_out(call: FakeCall, quiet_s: float = 1.0, timeout: float = 40.0) -> None:
    """Until the bridge has sent nothing for `quiet_s` and the far end played all of it."""
    await eventually(
        lambda: (
            call.out.of("media")
            and call.unplayed_s == 0
            and len(call.out.marks_echoed) + len(call.out.marks_cleared) == len(call.out.of("mark"))
            and time.monotonic() - call.last_message_at > quiet_s
        ),
        timeout,
        "answer played out",
    )


def stream_url(stack) -> str:
    return f"{stack.orchestrator.ws_url}/twilio/media"


def active_sessions(stack) -> float:
    text = httpx.get(stack.orchestrator.url + "/metrics", timeout=5).text
    match = re.search(r"^voice_orchestrator_active_sessions ([0-9.e+-]+)$", text, re.M)
    assert match, "voice_orchestrator_active_sessions missing"
    return float(match.group(1))


def user_messages(request: dict) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "user"]


# ------------------------------------------------------------------ webhook
async def test_webhook_answers_twiml_that_connects_a_stream(stack):
    base = stack.orchestrator.url
    response = await webhook(base, AUTH_TOKEN, query="mode=direct&language=en", call_sid="CA" + "1" * 32)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    twiml = parse_twiml(response.text)
    assert twiml.stream_url == f"ws://127.0.0.1:{stack.orchestrator.port}/twilio/media"
    assert twiml.parameters == {"mode": "direct", "language": "en", "callSid": "CA" + "1" * 32}

    # a webhook configured as GET: fields in the signed query string
    response = await webhook(base, AUTH_TOKEN, query="mode=direct", method="GET", call_sid="CA" + "2" * 32)
    assert response.status_code == 200, response.text
    assert parse_twiml(response.text).parameters == {"mode": "direct", "callSid": "CA" + "2" * 32}

    # behind a TLS proxy: the public URL comes from X-Forwarded-*, and that is the URL Twilio signed
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "voice.example.com"}
    response = await webhook(base, AUTH_TOKEN, public_url="https://voice.example.com", headers=forwarded)
    assert response.status_code == 200, response.text
    assert parse_twiml(response.text).stream_url == "wss://voice.example.com/twilio/media"


@pytest.mark.parametrize(
    "signature", [None, "bm90LWEtc2lnbmF0dXJl", "wrong-token", "wrong-url"], ids=["absent", "garbage", "token", "url"]
)
async def test_webhook_refuses_a_bad_signature(stack, signature):
    base = stack.orchestrator.url
    if signature == "wrong-token":
        signature = sign("another-token", base + "/twilio/voice", {})
    elif signature == "wrong-url":
        signature = sign(AUTH_TOKEN, "https://elsewhere.example.com/twilio/voice", {})
    response = await webhook(base, AUTH_TOKEN, signature=signature)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "bad_signature"


# ------------------------------------------------------------------ media stream handshake
@pytest.mark.parametrize("signature", [None, "bm90LWEtc2lnbmF0dXJl"], ids=["absent", "invalid"])
async def test_media_stream_refuses_a_bad_signature(stack, signature):
    call = FakeCall(stream_url(stack), AUTH_TOKEN, signature=signature)
    await call.open(start=False)
    await asyncio.wait_for(call.closed.wait(), 10)
    assert call.close_code == 1008
    assert "Twilio-Signature" in call.close_reason


async def test_media_stream_signed_for_another_url_is_refused(stack):
    call = FakeCall("wss://elsewhere.example.com/twilio/media", AUTH_TOKEN, connect_url=stream_url(stack))
    await call.open(start=False)
    await asyncio.wait_for(call.closed.wait(), 10)
    assert call.close_code == 1008


# ------------------------------------------------------------------ a call
async def test_call_answer_arrives_as_mulaw_frames_and_marks_come_back(stack):
    claude = stack.claude
    before = len(claude.requests)
    async with FakeCall(stream_url(stack), AUTH_TOKEN) as call:
        # malformed traffic first: each is skipped and the call goes on
        await call.send_raw("this is not json")
        await call.send_raw(b"\x00\x01binary")
        await call.send_raw('{"event": "media", "streamSid": "x", "media": {"payload": "@@not base64@@"}}')
        await call.send_raw('{"event": "no-such-event"}')
        await call.send_raw('{"event": "dtmf", "dtmf": {"digit": "X"}}')

        call.say(QUESTION, RATE)
        await eventually(lambda: len(claude.requests) > before, 30, "Claude asked")
        await eventually(lambda: call.out.of("mark"), 30, "first mark sent")
        # the whole answer plays (real time) and every mark comes back
        await played_out(call)

    assert user_messages(claude.requests[before])[-1].strip(), "the caller's words reached Claude"
    media = call.out.of("media")
    assert media, "no audio came back"
    for message in media + call.out.of("mark"):
        assert message["streamSid"] == call.stream_sid
    frames = [base64.b64decode(m["media"]["payload"]) for m in media]
    assert all(len(f) == FRAME_BYTES for f in frames), {len(f) for f in frames}
    audio = int16_to_float(mulaw_decode(b"".join(frames)))
    assert len(audio) / 8000 > 0.8, "espeak's answer is longer than this"
    assert rms_dbfs(audio) > -35.0, "outbound frames hold speech, not silence"
    # marks: echoed in the order they were sent, each after the audio queued before it
    assert call.out.marks_echoed == [m["mark"]["name"] for m in call.out.of("mark")]
    assert call.out.clears == 0
    assert call.heard_s == pytest.approx(len(frames) * 0.02, abs=0.001)


async def test_barge_in_clears_playback_and_history_keeps_what_was_heard(stack):
    claude = stack.claude
    claude.reply = LONG_REPLY
    before = len(claude.requests)
    async with FakeCall(stream_url(stack), AUTH_TOKEN) as call:
        call.say(QUESTION, RATE)
        await eventually(lambda: len(claude.requests) > before, 30, "Claude asked")
        # barge in once the first sentence and a bit of the (20 s long) answer have been heard
        await eventually(lambda: call.heard_s >= 2.0, 30, "answer playing")

        claude.reply = DEFAULT_REPLY
        call.say(concat(speak("Please tell me something else instead"), silence(0.2)), RATE)
        await eventually(lambda: call.out.clears >= 1, 20, "clear sent on barge-in")
        await eventually(lambda: len(claude.requests) > before + 1, 30, "the interruption became a turn")

    full_words = LONG_REPLY.split()
    second = claude.requests[before + 1]["messages"]
    assistant = [m["content"] for m in second if m["role"] == "assistant"]
    assert assistant, "the cut answer is in the history"
    kept = assistant[-1].split()
    assert 0 < len(kept) < len(full_words), "history holds the heard part only"
    assert kept == full_words[: len(kept)], "what is kept is a prefix of the answer"
    # marks of the cleared audio came back (Twilio echoes them) and were not taken as heard
    assert call.out.marks_cleared


async def test_keypad_digits_reach_the_agent_as_text(stack):
    claude = stack.claude
    before = len(claude.requests)
    async with FakeCall(stream_url(stack), AUTH_TOKEN) as call:
        await asyncio.sleep(0.3)
        for digit in "42#":
            await call.dtmf(digit)
            await asyncio.sleep(0.1)
        await eventually(lambda: len(claude.requests) > before, 20, "digits sent to Claude")
        assert user_messages(claude.requests[before])[-1] == "Keypad: 4 2"
        await eventually(lambda: call.out.of("media"), 20, "the agent answered the digits")

        # without '#', the digits go after the pause (TWILIO_DTMF_GAP_S=0.5)
        await played_out(call)
        await call.dtmf("7")
        await eventually(lambda: len(claude.requests) > before + 1, 20, "digit sent after the pause")
        assert user_messages(claude.requests[before + 1])[-1].endswith("Keypad: 7")


@pytest.mark.parametrize("ending", ["stop", "hang_up"])
async def test_call_ends_cleanly(stack, ending):
    await eventually(lambda: active_sessions(stack) == 0, 15, "no session open before")
    call = FakeCall(stream_url(stack), AUTH_TOKEN, custom_parameters={"mode": "direct"})
    await call.open()
    await eventually(lambda: active_sessions(stack) == 1, 15, "the call is a session")
    if ending == "stop":
        await call.stop()
        assert call.closed_by_server, "the bridge closes the socket on stop"
        assert call.close_code == 1000, (call.close_code, call.close_reason)
    else:
        await call.hang_up()
    await eventually(lambda: active_sessions(stack) == 0, 15, "session closed after the call")


async def test_with_api_keys_twilio_routes_use_signatures_instead(stack):
    """API_KEYS on: /twilio/* needs no API key (Twilio cannot send one) but a valid signature; with
    no TWILIO_AUTH_TOKEN configured the bridge refuses Twilio outright instead of running open."""
    base_env = {"ASR_URL": stack.asr.ws_url, "TTS_URL": stack.tts.ws_url, "API_KEYS": "k1"}
    signed = ServiceProcess("orchestrator", {**base_env, "TWILIO_AUTH_TOKEN": AUTH_TOKEN}, label="twilio-keys")
    unsigned = ServiceProcess("orchestrator", {**base_env, "TWILIO_AUTH_TOKEN": ""}, label="twilio-keys-no-token")
    with signed, unsigned:
        response = await webhook(signed.url, AUTH_TOKEN)
        assert response.status_code == 200, response.text
        async with httpx.AsyncClient() as client:  # everything else still needs the key
            assert (await client.get(signed.url + "/metrics")).status_code == 401
        call = FakeCall(f"{signed.ws_url}/twilio/media", AUTH_TOKEN)
        await call.open()
        await asyncio.sleep(0.5)
        assert not call.closed.is_set(), (call.close_code, call.close_reason)
        await call.stop()
        assert call.closed_by_server and call.close_code == 1000

        response = await webhook(unsigned.url, None, signature=None)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "twilio_not_configured"
        call = FakeCall(f"{unsigned.ws_url}/twilio/media", None, signature=None)
        await call.open(start=False)
        await asyncio.wait_for(call.closed.wait(), 10)
        assert call.close_code == 1008 and "TWILIO_AUTH_TOKEN" in call.close_reason
