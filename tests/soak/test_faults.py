"""One fault of bench/soak/faults.py, short: the ASR is killed (SIGKILL) while an agent session
and an ASR client are mid-turn, then restarted. Targets: the clients are told (a close; a coded
`asr_unavailable`), the agent session reconnects by itself and hears the next turn; plus one
Claude failure (529) answered with a coded error, an apology and `done`, the next turn fine."""

from __future__ import annotations

import pytest

from bench.soak import common, faults


@pytest.fixture(scope="module")
def fault_stack(models_dir, espeak):
    with common.stack("soak-faults-short") as s:
        yield s


async def test_asr_killed_and_restarted(fault_stack):
    row = await faults.asr_fault(fault_stack)
    assert row["asr_client_saw"], row
    assert "asr_unavailable" in row["agent_client_saw"], row
    assert row["agent_reconnected_s"] is not None and row["agent_recovered_s"] is not None, row
    assert all(common.alive(svc) for svc in common.services(fault_stack).values())


async def test_claude_overloaded(fault_stack):
    rows = await faults.claude_faults(fault_stack, modes=("529",))
    assert "llm_overloaded" in rows[0]["agent_client_saw"] and "; done" in rows[0]["agent_client_saw"], rows
    assert rows[0]["agent_recovered_s"] is not None, rows
