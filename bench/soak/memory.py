"""`python -m bench.soak.memory`: where the ASR service's memory goes under streaming load.

Starts one ASR service (the soak's settings) with extra environment (`--env MALLOC_ARENA_MAX=2`,
`--env ONEDNN_PRIMITIVE_CACHE_CAPACITY=1024`, ...), drives N soak ASR sessions (bench/soak/soak.py
`asr_session`: real speech at real-time pace) for S seconds, and samples every 2 s: VmRSS, finals
sent so far (/metrics), threads, and the resident memory by kind of mapping: the main heap, the
heaps of glibc's per-thread arenas (64 MiB reservations; an arena grows by whole heaps), other
anonymous mappings (mmap'd blocks, Python's arenas) and files. Prints one JSON line per sample
and a summary: each kind's growth from the first sample with `--skip` finals, in MiB and per 100
finals, the mean engine call time and the service's CPU seconds.

How the cause of the early ASR growth was found (docs/reliability.md, "ASR memory"); not part of
`make soak`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

from tests.helpers.procs import ServiceProcess
from tests.helpers.stack import ASR_ENV

from .common import metric, rss_mb
from .soak import asr_session

ARENA_RESERVE_KB = 64 * 1024  # glibc HEAP_MAX_SIZE on 64-bit: each non-main arena reserves this


def memory_classes(pid: int) -> dict[str, float]:
    """Resident MiB by kind of mapping, from /proc/PID/smaps. A glibc arena is an anonymous
    mapping whose rw part plus the PROT_NONE rest right after it make 64 MiB."""
    maps: list[dict] = []
    current: dict | None = None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
            start, end = (int(x, 16) for x in head[0].split("-"))
            current = {"start": start, "end": end, "perms": head[1], "name": head[5] if len(head) > 5 else "", "rss": 0}
            maps.append(current)
        elif head[0] == "Rss:" and current is not None:
            current["rss"] = int(head[1])
    out = {"heap": 0, "arenas": 0, "anon_other": 0, "files": 0}
    heaps = 0
    for i, m in enumerate(maps):
        if m["name"] == "[heap]":
            out["heap"] += m["rss"]
        elif m["name"].startswith("/"):
            out["files"] += m["rss"]
        elif not m["name"] and m["perms"].startswith("rw"):
            nxt = maps[i + 1] if i + 1 < len(maps) else None
            size = (m["end"] - m["start"]) // 1024
            if nxt and not nxt["name"] and nxt["perms"].startswith("---") and nxt["start"] == m["end"]:
                size += (nxt["end"] - nxt["start"]) // 1024
            if size == ARENA_RESERVE_KB and m["start"] % (ARENA_RESERVE_KB * 1024) == 0:
                out["arenas"] += m["rss"]
                heaps += 1
            else:
                out["anon_other"] += m["rss"]
    result = {k: round(v / 1024, 1) for k, v in out.items()}
    result["arena_heaps"] = heaps
    return result


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of the process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


async def sample(asr: ServiceProcess, until: float, t0: float, rows: list[dict]) -> None:
    while time.monotonic() < until:
        finals = await asyncio.to_thread(metric, asr, "voice_asr_finals_total")
        row = {
            "t": round(time.monotonic() - t0, 1),
            "finals": int(finals),
            "rss": round(rss_mb(asr) or 0.0, 1),
            "threads": threads(asr.proc.pid),
            **memory_classes(asr.proc.pid),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        await asyncio.sleep(2.0)


def summary(rows: list[dict], skip: int) -> dict:
    """Growth from the first sample with at least `skip` finals to the last: MiB and MiB per 100 finals."""
    after = [r for r in rows if r["finals"] >= skip] or rows
    first, last = after[0], rows[-1]
    finals = last["finals"] - first["finals"]
    out = {"from_t": first["t"], "to_t": last["t"], "finals": finals, "rss_start": first["rss"], "rss_end": last["rss"]}
    for key in ("rss", "heap", "arenas", "anon_other", "files"):
        delta = last[key] - first[key]
        out[f"{key}_mib"] = round(delta, 1)
        out[f"{key}_per_100"] = round(delta / finals * 100, 1) if finals else None
    out["arena_heaps"] = last["arena_heaps"]
    out["transcribe_ms"] = last.get("transcribe_ms")
    out["cpu_s"] = last.get("cpu_s")
    out["rss_at_first_final"] = next((r["rss"] for r in rows if r["finals"] >= 1), None)
    return out


async def drive(asr: ServiceProcess, streams: int, seconds: float) -> list[dict]:
    t0 = time.monotonic()
    rows: list[dict] = []
    sampler = asyncio.create_task(sample(asr, t0 + seconds + 10, t0, rows))
    await asyncio.gather(*(asr_session(asr.ws_url, t0 + seconds, i) for i in range(streams)))
    await sampler
    total = await asyncio.to_thread(metric, asr, "voice_asr_transcribe_seconds_sum")
    calls = await asyncio.to_thread(metric, asr, "voice_asr_transcribe_seconds_count")
    rows[-1]["transcribe_ms"] = round(total / calls * 1000, 1) if calls else None
    rows[-1]["cpu_s"] = round(cpu_s(asr.proc.pid), 1)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak.memory", description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--skip", type=int, default=0, help="finals before the growth is measured")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the service (repeatable)")
    parser.add_argument("--label", default="memory")
    args = parser.parse_args(argv)
    extra = dict(item.split("=", 1) for item in args.env)
    with ServiceProcess("asr", env={**ASR_ENV, **extra}, label=f"{args.label}-asr") as asr:
        print(json.dumps({"env": extra, "rss_ready": rss_mb(asr), **memory_classes(asr.proc.pid)}), flush=True)
        rows = asyncio.run(drive(asr, args.streams, args.seconds))
    print("SUMMARY " + json.dumps({"env": extra, **summary(rows, args.skip)}), flush=True)


if __name__ == "__main__":
    main()
