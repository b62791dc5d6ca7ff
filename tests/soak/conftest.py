"""One stack (ASR, TTS, orchestrator on a fake Claude) shared by the short harness runs that do
not kill anything: fuzz, soak, bombs. The faults test starts its own."""

from __future__ import annotations

import pytest

from bench.soak import common


@pytest.fixture(scope="session")
def soak_stack(models_dir, espeak):
    with common.stack("soak-short") as s:
        yield s
