"""Short soak (bench/soak/soak.py) on a stack of its own: ASR, TTS and agent sessions of real
speech at real-time pace, a warm-up run (8 ASR streams) then a measured run (4). Targets: every
owed final / synthesis / agent turn arrives, no unexpected close, no process dies, and no
service's memory grows with the turns it serves.

Memory is judged per turn, between two idle points (no session open: after the warm-up run and
after the measured run), in MiB per 100 ASR finals. The first turns allocate once (first
inferences, each window length, allocator pools), a leak grows with the turns served, and what a
running session holds (its ring, a decode's activations) is not memory kept. Why the limit and the
stack's allocator settings are what they are: docs/reliability.md, "ASR memory"."""

from __future__ import annotations

import asyncio
import json

from bench.soak import common, report, soak

WARMUP_S = 30.0
WARMUP_ASR = 8  # ~50 finals in all: where the ASR's arenas stop growing (docs/reliability.md)
MEASURED_S = 36.0
MEASURED_ASR = 4


async def test_short_soak_meets_the_targets(memory_stack):
    warmup = await soak.run(memory_stack, WARMUP_S / 60, asr=WARMUP_ASR, tts=1, agent=1, warmup_s=0.0, sample_s=1.0)
    before = await soak.idle_rss(memory_stack)
    warm = await asyncio.to_thread(common.metric, memory_stack.asr, "voice_asr_finals_total")
    result = await soak.run(memory_stack, MEASURED_S / 60, asr=MEASURED_ASR, tts=1, agent=1, warmup_s=0.0, sample_s=1.0)
    after = await soak.idle_rss(memory_stack)
    finals = await asyncio.to_thread(common.metric, memory_stack.asr, "voice_asr_finals_total") - warm
    growth = {name: round((after[name] - before[name]) / finals * 100.0, 1) for name in before}
    print(json.dumps({"warmup_finals": warm, "finals": finals, "idle": [before, after], "per_100_finals": growth}))
    for run in (warmup, result):
        kinds = {k["kind"]: k for k in run["kinds"]}
        assert set(kinds) == {"asr", "tts", "agent"}
        for kind, k in kinds.items():
            assert k["expected"] >= 1, kind
            assert k["received"] == k["expected"], f"{kind}: {k['received']} of {k['expected']} ({k['errors']})"
            assert not k["unexpected_closes"], f"{kind}: {k['unexpected_closes']}"
            assert k["p50"] is not None, kind
    assert all(common.alive(svc) for svc in common.services(memory_stack).values())
    assert finals >= 6, f"too few turns measured: {finals}"
    for name, per_100 in growth.items():
        assert per_100 < report.RSS_LEAK_LIMIT_MIB_PER_100, f"{name}: {per_100} MiB per 100 finals ({before} → {after})"
