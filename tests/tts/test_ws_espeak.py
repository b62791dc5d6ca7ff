"""/v1/tts/stream against a real TTS process running the espeak-ng engine: protocol, incremental
text, cancel, encodings, and every bad input getting an error while the session goes on."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from services.common.audio import decode, wav_bytes
from tests.helpers.speech import speak
from tests.tts.wsclient import TTSStream

pytestmark = pytest.mark.usefixtures("espeak")


@pytest.fixture
async def stream(espeak_service):
    s = await TTSStream.open(espeak_service.ws_url)
    yield s
    await s.close()


def chunks_of(events, request_id=None):
    return [e for e in events if e["type"] == "audio_chunk" and (request_id is None or e["request_id"] == request_id)]


async def test_synthesize_streams_chunks_then_completes(stream):
    assert stream.ready["sample_rate"] == 24000 and stream.ready["encoding"] == "pcm_f32le"
    assert stream.ready["engine"] == "espeak" and stream.ready["session_id"]
    text = "The quick brown fox jumps over the lazy dog. " * 3
    await stream.send(type="synthesize", request_id="r1", text=text, streaming=True)
    events = await stream.until("synthesis_complete")
    chunks = chunks_of(events, "r1")
    assert len(chunks) >= 5
    assert [c["chunk_id"] for c in chunks] == list(range(len(chunks)))
    audio = np.concatenate([decode(c["_audio"], "pcm_f32le") for c in chunks])
    for c in chunks:
        assert c["sample_rate"] == 24000
        assert abs(len(c["_audio"]) / 4 / 24 - c["duration_ms"]) < 0.01
    done = events[-1]
    assert done["request_id"] == "r1" and done["chunks_sent"] == len(chunks)
    assert done["total_duration_ms"] == pytest.approx(len(audio) / 24, abs=0.01)
    assert done["first_audio_ms"] is not None and 0 < done["first_audio_ms"] < done["total_duration_ms"]
    assert np.max(np.abs(audio)) > 0.05 and len(audio) / 24000 > 3.0


async def test_incremental_text_produces_audio_before_end(stream):
    await stream.send(type="text", request_id="inc", text="Hello there, this is the first sentence. ")
    first = await stream.until("audio_chunk", timeout=30)
    assert first[-1]["request_id"] == "inc"  # audio while the request is still open (no end sent yet)
    await stream.send(type="text", request_id="inc", text="And here comes")
    await stream.send(type="text", request_id="inc", text=" the second one.")
    await stream.send(type="end", request_id="inc")
    events = await stream.until("synthesis_complete")
    assert events[-1]["request_id"] == "inc"
    assert events[-1]["chunks_sent"] == 1 + len(chunks_of(events, "inc"))


async def test_flush_releases_an_unfinished_sentence(stream):
    await stream.send(type="text", text="no sentence end here")
    await stream.send(type="flush")
    events = await stream.until("audio_chunk", timeout=30)
    rid = events[-1]["request_id"]
    await stream.send(type="end", request_id=rid)
    done = (await stream.until("synthesis_complete"))[-1]
    assert done["request_id"] == rid


async def test_end_without_any_text_is_an_error_not_a_completion(stream):
    await stream.send(type="text", request_id="blank", text="   ")
    await stream.send(type="end", request_id="blank")
    error = await stream.event()
    assert error["type"] == "error" and error["code"] == "empty_text" and error["request_id"] == "blank"
    await stream.send(type="synthesize", request_id="next", text="Next.")
    events = await stream.until("synthesis_complete")
    assert [e["request_id"] for e in events if e["type"] == "synthesis_complete"] == ["next"]


async def test_cancel_stops_audio_and_sends_cancelled(stream):
    await stream.send(type="synthesize", request_id="long", text="This sentence is spoken many times. " * 40)
    await stream.until("audio_chunk")
    await stream.send(type="cancel", request_id="long")
    events = await stream.until("cancelled")
    assert events[-1]["request_id"] == "long"
    # nothing of that request after `cancelled`, and the session still works
    await stream.send(type="synthesize", request_id="after", text="Still here.")
    events = await stream.until("synthesis_complete")
    assert not chunks_of(events, "long")
    assert events[-1]["request_id"] == "after"


@pytest.mark.parametrize(("encoding", "rate", "width"), [("pcm_s16le", 16000, 2), ("mulaw", 8000, 1)])
async def test_output_encodings_and_sample_rates(stream, encoding, rate, width):
    await stream.send(type="config", encoding=encoding, sample_rate=rate)
    ready = await stream.event()
    assert ready["type"] == "ready" and ready["encoding"] == encoding and ready["sample_rate"] == rate
    await stream.send(type="synthesize", text="Testing another encoding.")
    events = await stream.until("synthesis_complete")
    chunks = chunks_of(events)
    total = sum(len(c["_audio"]) for c in chunks) // width
    assert all(c["sample_rate"] == rate and c["encoding"] == encoding for c in chunks)
    assert events[-1]["total_duration_ms"] == pytest.approx(total / rate * 1000, abs=0.01)
    audio = np.concatenate([decode(c["_audio"], encoding) for c in chunks])
    assert np.max(np.abs(audio)) > 0.05


async def test_non_streaming_request_sends_one_chunk(stream):
    await stream.send(type="synthesize", text="One sentence. And another one.", streaming=False)
    events = await stream.until("synthesis_complete")
    assert len(chunks_of(events)) == 1 and events[-1]["chunks_sent"] == 1


async def test_register_voice_then_use_it(stream):
    clip = base64.b64encode(wav_bytes(speak("A reference voice clip for espeak.", rate=24000), 24000)).decode()
    await stream.send(type="register_voice", voice_id="my-voice", reference_audio=clip)
    assert (await stream.until("voice_registered"))[-1]["voice_id"] == "my-voice"
    await stream.send(type="synthesize", text="With my voice.", voice_id="my-voice")
    assert (await stream.until("synthesis_complete"))[-1]["chunks_sent"] >= 1


BAD_INPUTS = [
    ({"type": "synthesize", "text": ""}, "empty_text"),
    ({"type": "synthesize", "text": "   \n\t "}, "empty_text"),
    ({"type": "synthesize", "text": "x" * 2001}, "text_too_long"),
    ({"type": "synthesize", "text": "Hi.", "voice_id": "nobody"}, "unknown_voice"),
    ({"type": "register_voice", "voice_id": "v1", "reference_audio": "not base64!!"}, "invalid_base64"),
    (
        {"type": "register_voice", "voice_id": "v2", "reference_audio": base64.b64encode(b"plain text").decode()},
        "bad_audio",
    ),
    ({"type": "config", "encoding": "opus"}, "bad_encoding"),
    ({"type": "config", "sample_rate": 1234}, "bad_sample_rate"),
    ({"type": "config", "sample_rate": "fast"}, "bad_sample_rate"),
    ({"type": "cancel"}, "nothing_to_cancel"),
    ({"type": "cancel", "request_id": "ghost"}, "nothing_to_cancel"),
    ({"type": "dance"}, "unknown_type"),
    ({"type": "synthesize", "text": "Hi.", "colour": "red"}, "unknown_field"),
    ({"type": "synthesize", "text": "Hi.", "temperature": 99}, "bad_parameter"),
    ({"type": "end"}, "no_request"),
]


@pytest.mark.parametrize(("message", "code"), BAD_INPUTS, ids=[c for _, c in BAD_INPUTS])
async def test_bad_input_gets_an_error_and_the_session_goes_on(stream, message, code):
    await stream.send(**message)
    error = await stream.event()
    assert error["type"] == "error" and error["code"] == code and error["message"] and error["fatal"] is False
    await stream.send(type="synthesize", text="Still working.")
    assert (await stream.until("synthesis_complete"))[-1]["chunks_sent"] >= 1


@pytest.mark.parametrize(("seconds", "code"), [(0.3, "reference_too_short"), (9.0, "reference_too_long")])
async def test_reference_clip_duration_limits(stream, seconds, code):
    clip = (0.3 * np.sin(np.arange(int(24000 * seconds)) * 0.05)).astype(np.float32)
    encoded = base64.b64encode(wav_bytes(clip, 24000)).decode()
    await stream.send(type="register_voice", voice_id="dur", reference_audio=encoded)
    error = await stream.event()
    assert error["type"] == "error" and error["code"] == code


async def test_binary_frames_and_bad_json_are_refused_without_closing(stream):
    await stream.ws.send(b"\x00\x01\x02")
    assert (await stream.event())["code"] == "unexpected_binary"
    await stream.ws.send("{not json")
    assert (await stream.event())["code"] == "bad_json"
    await stream.send(type="synthesize", text="Fine.")
    assert (await stream.until("synthesis_complete"))[-1]["chunks_sent"] >= 1


async def test_metrics_count_first_audio_and_streams(espeak_service, stream):
    import httpx

    await stream.send(type="synthesize", text="Count me.")
    await stream.until("synthesis_complete")
    async with httpx.AsyncClient() as http:
        text = (await http.get(espeak_service.url + "/metrics")).text
    for name in (
        "voice_tts_time_to_first_audio_seconds_count",
        "voice_tts_real_time_factor_count",
        "voice_tts_queue_depth",
        "voice_tts_active_streams",
        "voice_tts_voice_cache_hits_total",
    ):
        assert name in text
    assert "voice_tts_active_streams 1.0" in text
