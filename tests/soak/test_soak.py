"""Short soak (bench/soak/soak.py) on a stack of its own: ASR, TTS and agent sessions of real
speech at real-time pace, a warm-up run (8 ASR streams) then three measured runs (4 each).
Targets: every owed final / synthesis / agent turn arrives, no unexpected close, no process
dies, and no service's memory grows with the turns it serves.

Memory is judged per turn, between idle points (no session open: after the warm-up run and after
each measured run), in MiB per 100 ASR finals, and fails when it grew past the limit over all
measured runs: a leak grows with every turn, while the allocator settling (arenas reaching their
high-water mark, a fragmented heap growing) is a step that lands in one run (two, once, in a
full-suite run on an AVX2-only host: 8.3 and 14.0 MiB per 100 with no leak, hence three runs). What a running
session holds (its ring, a decode's activations) is gone at an idle point. Why the limit and the
stack's allocator settings are what they are: docs/reliability.md, "ASR memory"."""

from __future__ import annotations

import asyncio
import json

from bench.soak import common, report, soak

WARMUP_S = 30.0
WARMUP_ASR = 8  # ~50 finals in all: where the ASR's arenas stop growing (docs/reliability.md)
MEASURED_S = 30.0  # each of the measured runs
MEASURED_RUNS = 3
MEASURED_ASR = 4


async def test_short_soak_meets_the_targets(memory_stack):
    s = memory_stack
    runs = [await soak.run(s, WARMUP_S / 60, asr=WARMUP_ASR, tts=1, agent=1, warmup_s=0.0, sample_s=1.0)]
    idle = [await soak.idle_rss(s)]
    finals = [await asyncio.to_thread(common.metric, s.asr, "voice_asr_finals_total")]
    for _ in range(MEASURED_RUNS):
        runs.append(await soak.run(s, MEASURED_S / 60, asr=MEASURED_ASR, tts=1, agent=1, warmup_s=0.0, sample_s=1.0))
        idle.append(await soak.idle_rss(s))
        finals.append(await asyncio.to_thread(common.metric, s.asr, "voice_asr_finals_total"))
    # MiB per 100 ASR finals over each measured run, between the idle readings around it
    growth = {
        name: [
            round((idle[i + 1][name] - idle[i][name]) / (finals[i + 1] - finals[i]) * 100.0, 1)
            for i in range(MEASURED_RUNS)
        ]
        for name in idle[0]
    }
    print(json.dumps({"finals": finals, "idle": idle, "per_100_finals": growth}))
    for run in runs:
        kinds = {k["kind"]: k for k in run["kinds"]}
        assert set(kinds) == {"asr", "tts", "agent"}
        for kind, k in kinds.items():
            assert k["expected"] >= 1, kind
            assert k["received"] == k["expected"], f"{kind}: {k['received']} of {k['expected']} ({k['errors']})"
            assert not k["unexpected_closes"], f"{kind}: {k['unexpected_closes']}"
            assert k["p50"] is not None, kind
    assert all(common.alive(svc) for svc in common.services(s).values())
    assert min(b - a for a, b in zip(finals, finals[1:], strict=False)) >= 6, f"too few turns measured: {finals}"
    for name, per_100 in growth.items():
        # a leak grows over every run; the allocator settling is a step in one or two of them
        assert min(per_100) < report.RSS_LEAK_LIMIT_MIB_PER_100, f"{name}: {per_100} MiB per 100 finals ({idle})"
