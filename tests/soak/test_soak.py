"""Short soak (bench/soak/soak.py): 2 ASR + 1 TTS + 1 agent sessions of real speech at real-time
pace, a warm-up then a measured phase. Targets: every owed final / synthesis / agent turn arrives,
no unexpected close, no process dies, and no service's memory grows with the turns it serves.

Memory is judged per turn over the measured phase (MiB per 100 ASR finals), not in % of a few
seconds: the first turns allocate once (first inferences, each window length, allocator pools),
and a leak grows with the turns served. Why the limit and the stack's allocator settings are what
they are: docs/reliability.md, "ASR memory"."""

from __future__ import annotations

import json

from bench.soak import common, report, soak

WARMUP_S = 12.0  # each session's first two sentences: every code path has run once
MEASURED_S = 24.0


async def test_short_soak_meets_the_targets(soak_stack):
    minutes = (WARMUP_S + MEASURED_S) / 60
    result = await soak.run(soak_stack, minutes, asr=2, tts=1, agent=1, warmup_s=WARMUP_S, sample_s=1.0)
    print(json.dumps({n: {k: v for k, v in r.items() if k != "per_minute"} for n, r in result["rss"].items()}))
    kinds = {k["kind"]: k for k in result["kinds"]}
    assert set(kinds) == {"asr", "tts", "agent"}
    for kind, k in kinds.items():
        assert k["expected"] >= 1, kind
        assert k["received"] == k["expected"], f"{kind}: {k['received']} of {k['expected']} ({k['errors']})"
        assert not k["unexpected_closes"], f"{kind}: {k['unexpected_closes']}"
        assert k["p50"] is not None, kind
    assert all(common.alive(svc) for svc in common.services(soak_stack).values())
    for name, rss in result["rss"].items():
        assert rss["finals"] is not None and rss["finals"] >= 6, f"{name}: too few turns measured: {rss}"
        assert rss["per_100_finals"] < report.RSS_LEAK_LIMIT_MIB_PER_100, f"{name}: {rss}"
