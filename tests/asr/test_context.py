"""A turn that follows the previous one closely is decoded after it (services/asr/context.py).

On the real models: each of the fixed set's paused sentences, streamed alone in `vad` mode (0.2 s
of silence ends a turn, so every one splits at its 0.4–0.8 s pause): the turn after the pause is
decoded after the one before it, and no word of the first turn comes back in the second. The
words are scored against the same run with the context off (ASR_CONTEXT_GAP_SECS=0).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import numpy as np
import prometheus_client

from services.asr.context import CONTEXT_MAX_S, PreviousTurn
from services.asr.core import AudioIn, Configure, End, SessionCore
from services.asr.transcript import SAMPLE_RATE, Transcript
from services.common.audio import encode
from services.common.protocol.asr import Final, StreamConfig, TurnDetection
from tests.asr.conftest import COMPLETE, COMPLETE_2, said
from tests.helpers import corpus
from tests.helpers.core_stream import Collector
from tests.helpers.speech import concat, silence
from tests.helpers.wer import corpus_wer, words

VAD = Configure(StreamConfig(partials=False, turn_detection=TurnDetection(mode="vad", stop_secs=0.2)))


def kept() -> float:
    return prometheus_client.REGISTRY.get_sample_value("voice_asr_context_decodes_total", {"outcome": "kept"}) or 0.0


async def finals_of(engines, audio: np.ndarray, gap_s: float) -> list[Final]:
    core = SessionCore(replace(engines.config, context_gap_s=gap_s), engines)
    out = Collector()
    core.open(out)
    await core.handle(VAD)
    for i in range(0, len(audio), 3200):
        await core.handle(AudioIn(encode(audio[i : i + 3200], "pcm_s16le")))
    await core.handle(End())
    await asyncio.wait_for(out.closed.wait(), 120)
    await core.close()
    return out.finals()


async def test_the_turn_after_a_split_is_decoded_after_the_one_before(engines):
    clips = [c for engine in corpus.ENGINES for c in corpus.paused(engine)]
    results = {}
    for gap_s in (0.0, 1.0):
        before = kept()
        runs = [await finals_of(engines, concat(silence(0.4), c.audio, silence(1.0)), gap_s) for c in clips]
        assert all(len(finals) == 2 for finals in runs), [[f.text for f in finals] for finals in runs]
        results[gap_s] = (runs, kept() - before)
    alone, with_context = (results[g][0] for g in (0.0, 1.0))
    assert results[0.0][1] == 0  # off means off
    assert results[1.0][1] >= len(clips)  # every second turn (a speculative decode may add more)
    for first, second in with_context:
        # the second final is the second turn's words only: the first turn's do not come back
        assert words(second.text)[: len(words(first.text))] != words(first.text), (first.text, second.text)
        assert second.start >= first.end
        # word timestamps (on by default) are this turn's words, inside this turn
        assert words(" ".join(w.word for w in second.words)) == words(second.text), (second.text, second.words)
        assert all(second.start <= w.start <= w.end <= second.end for w in second.words), second.words

    def score(runs) -> float:
        return corpus_wer([(c.text, " ".join(f.text for f in finals)) for c, finals in zip(clips, runs, strict=True)])

    print(f"\n[context] paused sentences split in vad mode: WER alone {score(alone):.2%}, after the first turn "
          f"{score(with_context):.2%}")  # fmt: skip
    assert score(with_context) <= score(alone)


async def test_a_turn_after_a_long_silence_is_decoded_alone(engines):
    audio = concat(silence(0.4), said(COMPLETE), silence(1.5), said(COMPLETE_2), silence(1.0))
    before = kept()
    finals = await finals_of(engines, audio, 1.0)
    assert len(finals) == 2
    assert kept() == before


def done(text: str | Exception | None) -> asyncio.Future:
    future = asyncio.get_running_loop().create_future()
    if isinstance(text, Exception):
        future.set_exception(text)
    elif text is None:
        future.cancel()
    else:
        future.set_result(Transcript(text=text, language="en", language_probability=1.0, duration=1.0, segments=[]))
    return future


async def test_previous_turn_rules():
    audio = np.ones(SAMPLE_RATE, dtype=np.float32)  # 1 s of audio starting at 2.0 s, speech ends at 2.8 s
    task = done("Please send the message")
    assert PreviousTurn.keep(audio, 2.0, None, task) is None  # no speech end: nothing to follow
    assert PreviousTurn.keep(np.zeros(int((CONTEXT_MAX_S + 1) * SAMPLE_RATE), np.float32), 2.0, 2.8, task) is None
    previous = PreviousTurn.keep(audio, 2.0, 2.8, task)
    assert previous is not None
    assert previous.follows(3.5, 1.0) and not previous.follows(4.0, 1.0) and not previous.follows(3.5, 0.0)
    head, prefix = await previous.context(2.5)  # the next turn's audio starts inside this one's
    assert prefix == "Please send the message" and len(head) == SAMPLE_RATE // 2
    head, _ = await previous.context(3.25)  # past what was kept: digital silence fills the gap
    assert len(head) == int(1.25 * SAMPLE_RATE) and not head[SAMPLE_RATE:].any()
    for outcome in ("", ValueError("engine failed"), None):  # no text, a failed or a cancelled final
        assert await PreviousTurn(audio, 2.0, 2.8, done(outcome)).context(3.0) == (None, None)
