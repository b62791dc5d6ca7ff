"""The ASR scheduler on the real engine (Whisper tiny.en): finals first, shed partials, dropped
speculative work. Order is read from the scheduler's record of what started, never from times."""

from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest

from services.asr import config as asr_config
from services.asr.engines import Request
from services.asr.transcriber import Transcriber
from tests.asr.conftest import COMPLETE, FAST_ENV, said
from tests.helpers.speech import concat, silence


@pytest.fixture(scope="module")
def transcriber(models_dir, espeak):
    # one worker (the default): what waits behind what is the scheduler's order
    config = asr_config.load({**os.environ, **FAST_ENV, "ASR_BATCH_SIZE": "1", "ASR_WORKERS": "1"})
    engine = Transcriber(config)
    engine.load()
    return engine


async def until(predicate, what: str) -> None:
    for _ in range(3000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


def long_clip() -> np.ndarray:
    """~25 s of speech: a partial on it keeps the one worker busy while the test queues more."""
    clip = concat(said(COMPLETE), silence(0.5))
    return np.tile(clip, int(25 * 16000 / len(clip)))


def a_turn() -> np.ndarray:
    return concat(silence(0.3), said(COMPLETE), silence(0.2))


async def hold_the_worker(transcriber) -> tuple[asyncio.Task, int]:
    """Start the scheduler with a long partial running on its one worker: the task, and the length
    of the scheduler's record once that partial has started."""
    transcriber.start()
    busy = asyncio.create_task(transcriber.transcribe(Request(long_clip(), "partial")))
    await until(lambda: transcriber.running["partial"] == 1, "the long partial runs")
    return busy, len(transcriber.order)


async def test_a_final_is_never_queued_behind_a_partial(transcriber):
    try:
        busy, recorded = await hold_the_worker(transcriber)
        first = recorded - 1  # where the long partial's start is recorded
        turn = a_turn()
        queued = [asyncio.create_task(transcriber.transcribe(Request(turn, "partial"))) for _ in range(2)]
        await until(lambda: transcriber.waiting["partial"] == 2, "two partials wait")
        assert transcriber.accepts_partial() is False  # the queue is full: a session skips its partial
        final = asyncio.create_task(transcriber.transcribe(Request(turn, "final", word_timestamps=True)))
        await until(lambda: transcriber.waiting["final"] == 1, "the final waits")
        assert transcriber.accepts_partial() is False  # never while a final waits
        result = await final
        outcomes = await asyncio.gather(busy, *queued, return_exceptions=True)
    finally:
        await transcriber.stop()
    assert result.words and "how" in result.text.lower()
    # the running partial cannot be interrupted; the final goes next, before both partials queued ahead of it
    assert transcriber.order[first : first + 2] == ["partial", "final"], transcriber.order
    for outcome in outcomes[1:]:  # each queued partial either ran after the final or was shed unrun
        assert isinstance(outcome, asyncio.CancelledError) or outcome.text


async def test_work_nobody_awaits_is_dropped_before_it_runs(transcriber):
    """A speculative final the session threw away (its task cancelled) never takes the engine."""
    try:
        busy, before = await hold_the_worker(transcriber)
        turn = a_turn()
        speculative = asyncio.create_task(transcriber.transcribe(Request(turn, "final")))
        await until(lambda: transcriber.waiting["final"] == 1, "the speculative final waits")
        speculative.cancel()
        kept = await transcriber.transcribe(Request(turn, "final"))
        await busy
    finally:
        await transcriber.stop()
    assert kept.text
    assert transcriber.order[before:] == ["final"]  # one final ran: the kept one


async def test_a_sessions_partial_is_shed_once_its_final_is_queued(transcriber):
    """The turn ended: its partial would be dropped by the session anyway, so it never runs."""
    transcriber.partial_max_wait_s = 600.0  # only the superseded rule here, not the age one
    try:
        busy, before = await hold_the_worker(transcriber)
        turn = a_turn()
        mine = asyncio.create_task(transcriber.transcribe(Request(turn, "partial", owner="s1")))
        other = asyncio.create_task(transcriber.transcribe(Request(turn, "partial", owner="s2")))
        await until(lambda: transcriber.waiting["partial"] == 2, "both partials wait")
        final = await transcriber.transcribe(Request(turn, "final", owner="s1"))
        outcomes = await asyncio.gather(busy, mine, other, return_exceptions=True)
    finally:
        await transcriber.stop()
        transcriber.partial_max_wait_s = transcriber.config.partial_max_wait_s
    assert final.text
    assert isinstance(outcomes[1], asyncio.CancelledError)  # s1's partial: shed unrun
    assert not isinstance(outcomes[2], BaseException) and outcomes[2].text  # s2's still ran
    assert transcriber.order[before:] == ["final", "partial"]


async def test_a_final_taken_while_others_wait_is_decoded_in_the_backlog_window(transcriber):
    """Finals of sessions a, b, c, c queued behind a running partial, taken in that order: a and b
    each have another session's final waiting, so they are marked backlog (the cheaper window);
    c's first final has only its own session's next one behind it (a client faster than real
    time: degrading it buys no one time) and the last has none, so both get the full window.
    All keep their words."""
    try:
        busy, _ = await hold_the_worker(transcriber)
        before = transcriber.backlogged
        turn = a_turn()
        finals = [asyncio.create_task(transcriber.transcribe(Request(turn, "final", owner=owner))) for owner in "abcc"]
        await until(lambda: transcriber.waiting["final"] == 4, "four finals wait")
        results = await asyncio.gather(*finals)
        await asyncio.gather(busy, return_exceptions=True)
    finally:
        await transcriber.stop()
    assert transcriber.backlogged - before == 2
    for result in results:
        assert "how" in result.text.lower(), result.text


async def test_with_two_workers_a_final_runs_while_a_partial_holds_the_other(models_dir, espeak):
    """ASR_WORKERS=2: a final does not wait for a running partial."""
    config = asr_config.load({**os.environ, **FAST_ENV, "ASR_WORKERS": "2", "ASR_BATCH_SIZE": "1"})
    two = Transcriber(config)
    assert two.workers == 2
    two.load()
    try:
        busy, _ = await hold_the_worker(two)
        final = asyncio.create_task(two.transcribe(Request(a_turn(), "final")))
        await until(lambda: two.running["final"] == 1, "the final runs beside the partial")
        assert two.running["partial"] == 1
        result = await final
        assert not busy.done()  # the ~25 s partial is still running: the final did not wait for it
        busy.cancel()
    finally:
        await two.stop()
    assert "how" in result.text.lower()
