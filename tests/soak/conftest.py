"""One stack (ASR, TTS, orchestrator on a fake Claude) shared by the short harness runs that do
not kill anything (fuzz, bombs), and one of its own for the short soak, whose memory check needs
a stack with no history but its own warm-up: after the bombs' large uploads the ASR holds
~110 MiB more and its idle RSS swings by ±3 MiB from one reading to the next (docs/reliability.md,
"How memory is judged"). The faults test starts its own. Every service runs with
`LIVE_MEMORY_ENV` (glibc settings under which RSS follows live memory), so the memory check sees
leaks, not allocator caching (bench/soak/common.py)."""

from __future__ import annotations

import pytest

from bench.soak import common


@pytest.fixture(scope="session")
def soak_stack(models_dir, espeak):
    env = common.LIVE_MEMORY_ENV
    with common.stack("soak-short", asr_env=env, tts_env=env, orchestrator_env=env) as s:
        yield s


@pytest.fixture
def memory_stack(models_dir, espeak):
    env = common.LIVE_MEMORY_ENV
    with common.stack("soak-memory", asr_env=env, tts_env=env, orchestrator_env=env) as s:
        yield s
