"""One stack (ASR, TTS, orchestrator on a fake Claude) shared by the short harness runs that do
not kill anything: fuzz, soak, bombs. The faults test starts its own. Every service runs with
`LIVE_MEMORY_ENV` (glibc settings under which RSS follows live memory), so the short soak's
memory check sees leaks, not allocator caching (bench/soak/common.py)."""

from __future__ import annotations

import pytest

from bench.soak import common


@pytest.fixture(scope="session")
def soak_stack(models_dir, espeak):
    env = common.LIVE_MEMORY_ENV
    with common.stack("soak-short", asr_env=env, tts_env=env, orchestrator_env=env) as s:
        yield s
