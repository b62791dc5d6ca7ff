"""The TTS session core without a server: typed inputs in, protocol messages out, on a real
runtime (espeak-ng engine, directory voice store). Then one regression over the real WebSocket
adapter (issue 9 item 4: a lone surrogate in `voice_id` used to crash the session)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
import websockets

from services.common.errors import CodedError
from services.common.protocol.base import Error, Message
from services.common.protocol.tts import AudioChunk, Cancelled, Ready, SynthesisComplete
from services.tts import config as tts_config
from services.tts.core import Cancel, Configure, End, Flush, Synthesize, Text, TTSCore
from services.tts.runtime import TTSRuntime


class Recorder:
    """The core's output, kept in order; `wait_for` waits for a message kind (no wall-clock asserts)."""

    def __init__(self) -> None:
        self.items: list[Message] = []
        self.data: dict[int, bytes] = {}  # index in items → that chunk's bytes
        self._changed = asyncio.Event()

    async def event(self, message: Message) -> None:
        self.items.append(message)
        self._changed.set()

    async def audio(self, chunk: AudioChunk, data: bytes) -> None:
        self.data[len(self.items)] = data
        self.items.append(chunk)
        self._changed.set()

    def of(self, kind: type, request_id: str | None = None) -> list:
        return [m for m in self.items if isinstance(m, kind) and (request_id is None or m.request_id == request_id)]

    async def wait_for(self, kind: type, request_id: str | None = None, count: int = 1, timeout: float = 60) -> Message:
        async with asyncio.timeout(timeout):
            while True:
                found = self.of(kind, request_id)
                if len(found) >= count:
                    return found[-1]
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture(scope="module")
async def runtime(espeak, tmp_path_factory):
    env = {
        "TTS_ENGINE": "espeak",
        "TTS_VOICES_DIR": str(tmp_path_factory.mktemp("core-voices")),
        "TTS_MAX_TEXT_CHARS": "400",
        "REDIS_URL": "",
    }
    rt = TTSRuntime(tts_config.load(env))
    await rt.start()
    await rt._load_task
    assert rt.loaded, rt.load_error
    yield rt
    await rt.stop()


@pytest.fixture
async def session(runtime):
    out = Recorder()
    core = TTSCore(runtime, out, session_id="core-test")
    await core.open()
    yield core, out
    await core.close()


async def test_open_says_ready_with_the_engine(session):
    core, out = session
    ready = out.items[0]
    assert isinstance(ready, Ready) and ready.session_id == "core-test"
    assert (ready.engine, ready.sample_rate, ready.encoding) == ("espeak", 24000, "pcm_f32le")


async def test_synthesize_streams_ordered_chunks_then_completes(session):
    core, out = session
    await core.handle(Synthesize("Hello there. This is the core speaking.", request_id="r1"))
    done = await out.wait_for(SynthesisComplete, "r1")
    chunks = out.of(AudioChunk, "r1")
    assert [c.chunk_id for c in chunks] == list(range(len(chunks))) and done.chunks_sent == len(chunks)
    assert all(c.session_id == "core-test" for c in chunks)
    audio = b"".join(out.data[out.items.index(c)] for c in chunks)
    samples = np.frombuffer(audio, dtype="<f4")
    assert len(samples) / 24000 == pytest.approx(done.total_duration_ms / 1000, abs=1e-3)
    assert done.total_duration_ms > 1000 and float(np.sqrt(np.mean(samples**2))) > 0.01  # speech, not silence
    assert not core.busy


async def test_configure_changes_the_encoding_of_what_follows(session):
    core, out = session
    await core.handle(Configure({"encoding": "pcm_s16le", "sample_rate": 16000}))
    ready = out.of(Ready)[-1]
    assert (ready.encoding, ready.sample_rate) == ("pcm_s16le", 16000)
    await core.handle(Synthesize("Sixteen bit.", request_id="s16", streaming=False))
    done = await out.wait_for(SynthesisComplete, "s16")
    (chunk,) = out.of(AudioChunk, "s16")  # not streaming: one chunk
    data = out.data[out.items.index(chunk)]
    assert (chunk.encoding, chunk.sample_rate) == ("pcm_s16le", 16000)
    assert len(data) == 2 * round(done.total_duration_ms * 16)
    with pytest.raises(CodedError) as exc:
        await core.handle(Configure({"encoding": "ogg"}))
    assert exc.value.code == "bad_encoding" and core.config.encoding == "pcm_s16le"


async def test_incremental_text_speaks_a_sentence_before_the_end(session):
    core, out = session
    await core.handle(Text("The first sentence is complete. The second", request_id="inc"))
    await out.wait_for(AudioChunk, "inc")  # audio while the request is still open
    assert not out.of(SynthesisComplete, "inc")
    await core.handle(Text(" one ends here."))
    await core.handle(Flush())
    await core.handle(End("inc"))
    done = await out.wait_for(SynthesisComplete, "inc")
    assert done.chunks_sent == len(out.of(AudioChunk, "inc")) >= 2


async def test_cancel_answers_at_once_and_no_audio_follows(session):
    core, out = session
    # an incremental request stays open until `end`, so it is surely still running when cancelled
    await core.handle(Text("A first sentence to speak. And a second one to cut. " * 3, request_id="long"))
    await out.wait_for(AudioChunk, "long")
    await core.handle(Cancel("long"))
    (cancelled,) = out.of(Cancelled, "long")
    assert not core.busy
    await core.handle(Synthesize("Next.", request_id="next"))  # the session goes on
    await out.wait_for(SynthesisComplete, "next")
    after = out.items[out.items.index(cancelled) + 1 :]
    assert not [m for m in after if getattr(m, "request_id", None) == "long"]
    assert not out.of(SynthesisComplete, "long")


async def test_an_incremental_request_without_text_ends_in_an_error_event(session):
    core, out = session
    await core.handle(Text("   ", request_id="blank"))
    await core.handle(End())
    error = out.of(Error)[-1]
    assert (error.code, error.request_id) == ("empty_text", "blank") and not core.busy


@pytest.mark.parametrize(
    ("item", "code"),
    [
        (Synthesize(""), "empty_text"),
        (Synthesize("x" * 401), "text_too_long"),
        (Synthesize(7), "bad_text"),
        (Synthesize("hi", streaming="yes"), "bad_parameter"),
        (Synthesize("hi", options={"temperature": 99}), "bad_parameter"),
        (Synthesize("hi", voice_id="nobody"), "unknown_voice"),
        (Synthesize("hi", voice_id="bad\ud800voice"), "invalid_text"),
        (Synthesize("lone \udfff surrogate"), "invalid_text"),
        (Text("lone \ud800"), "invalid_text"),
        (Flush(), "no_request"),
        (End(), "no_request"),
        (Cancel(), "nothing_to_cancel"),
        (Cancel("ghost"), "nothing_to_cancel"),
        (Configure({"voice_id": "nobody"}), "unknown_voice"),
    ],
)
async def test_refused_inputs_raise_a_coded_error_and_nothing_is_queued(session, item, code):
    core, out = session
    with pytest.raises(CodedError) as exc:
        await core.handle(item)
    assert exc.value.code == code and exc.value.message
    assert not core.busy and not out.of(AudioChunk)


async def test_a_running_request_id_cannot_be_reused(session):
    core, out = session
    await core.handle(Synthesize("One sentence to keep it busy for a moment.", request_id="dup"))
    with pytest.raises(CodedError) as exc:
        await core.handle(Synthesize("again", request_id="dup"))
    assert exc.value.code == "duplicate_request_id"
    await out.wait_for(SynthesisComplete, "dup")
    await core.handle(Synthesize("Now it may.", request_id="dup"))  # finished ids are free again
    await out.wait_for(SynthesisComplete, "dup", count=2)


# ------------------------------------------------------------------ the WebSocket adapter
async def test_ws_lone_surrogate_voice_id_is_an_error_event_and_the_session_goes_on(espeak_service):
    async with websockets.connect(espeak_service.ws_url + "/v1/tts/stream", max_size=None) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        # a JSON escape: valid UTF-8 on the wire, a lone surrogate once decoded
        await ws.send('{"type": "synthesize", "text": "hello", "voice_id": "\\ud800"}')
        error = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert (error["type"], error["code"], error["fatal"]) == ("error", "bad_json", False), error
        await ws.send('{"type": "config", "voice_id": "x\\udfff"}')
        assert json.loads(await asyncio.wait_for(ws.recv(), 30))["code"] == "bad_json"
        await ws.send(json.dumps({"type": "synthesize", "text": "Still here.", "request_id": "after"}))
        types = []
        while not types or types[-1] != "synthesis_complete":
            raw = await asyncio.wait_for(ws.recv(), 60)
            if isinstance(raw, str):
                types.append(json.loads(raw)["type"])
        assert "audio_chunk" in types and "error" not in types


async def test_close_ends_the_session_even_when_a_task_cannot_be_stopped(runtime):
    """A session task waiting on work that cancelling cannot stop (an engine call in a thread runs to
    its end; shield() stands for it here) must not keep a closing session, and so its count and its
    transport, alive: close() waits CLOSE_WAIT_S, logs where the task waits, and returns."""
    from services.tts import core as tts_core

    out = Recorder()
    core = TTSCore(runtime, out, session_id="core-stuck")
    await core.open()
    never = asyncio.get_running_loop().create_future()

    async def uninterruptible() -> None:
        while not never.done():
            try:
                await asyncio.shield(never)
            except asyncio.CancelledError:
                continue  # what a thread does with a cancel: nothing

    stuck = asyncio.create_task(uninterruptible())
    core._tasks.add(stuck)
    saved, tts_core.CLOSE_WAIT_S = tts_core.CLOSE_WAIT_S, 0.2
    try:
        await asyncio.wait_for(core.close(), 30)
        assert core.closed and not stuck.done()  # close returned without it
    finally:
        tts_core.CLOSE_WAIT_S = saved
        never.cancel()
