"""Short soak (bench/soak/soak.py): 2 ASR + 1 TTS + 1 agent sessions of real speech at real-time
pace for 20 s. Targets: every owed final / synthesis / agent turn arrives, no unexpected close,
no process dies, no service's RSS grows by 10 % or more after the warm-up."""

from __future__ import annotations

from bench.soak import common, soak


async def test_short_soak_meets_the_targets(soak_stack):
    result = await soak.run(soak_stack, minutes=20 / 60, asr=2, tts=1, agent=1)
    kinds = {k["kind"]: k for k in result["kinds"]}
    assert set(kinds) == {"asr", "tts", "agent"}
    for kind, k in kinds.items():
        assert k["expected"] >= 1, kind
        assert k["received"] == k["expected"], f"{kind}: {k['received']} of {k['expected']} ({k['errors']})"
        assert not k["unexpected_closes"], f"{kind}: {k['unexpected_closes']}"
        assert k["p50"] is not None, kind
    assert all(common.alive(svc) for svc in common.services(soak_stack).values())
    for name, rss in result["rss"].items():
        assert rss["growth_pct"] is not None and rss["growth_pct"] < 10.0, f"{name}: {rss}"
