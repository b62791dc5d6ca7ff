"""bench/out/RELIABILITY.md (and reliability.json with the raw figures) from the parts' results."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import asdict
from pathlib import Path

from bench.report import machine as bench_machine

from .common import OUT, Tally

RSS_GROWTH_LIMIT_PCT = 10.0
RSS_LEAK_LIMIT_MIB_PER_100 = 6.0  # growth after the warm-up per 100 ASR finals (docs/reliability.md)


_MACHINE: list[str] = []


def machine() -> str:
    """Described once per run: the commit is the one the run started on, not the last one."""
    if not _MACHINE:
        _MACHINE.append(_describe())
    return _MACHINE[0]


def _describe() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "?"
    return f"{bench_machine()}; commit {commit}"


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def targets(results: dict) -> list[tuple[str, str, bool]]:
    rows = []
    fuzz: dict[str, Tally] = results.get("fuzz") or {}
    soak = results.get("soak")
    deaths = sum(t.deaths for t in fuzz.values()) + len((soak or {}).get("deaths", []))
    rows.append(("0 process deaths", str(deaths), deaths == 0))
    closes = sum(len(t.unexpected_closes) for t in fuzz.values())
    if soak:
        closes += sum(len(k["unexpected_closes"]) for k in soak["kinds"])
    rows.append(("0 unexpected closes", str(closes), closes == 0))
    if soak:
        lost = sum(max(0, k["expected"] - k["received"]) for k in soak["kinds"] if k["kind"] in ("asr", "agent"))
        rows.append(("0 lost finals (ASR + agent turns)", str(lost), lost == 0))
        growth = {n: r["growth_pct"] for n, r in soak["rss"].items()}
        worst = max((g for g in growth.values() if g is not None), default=0.0)
        shown = ", ".join(f"{n} {g:+.1f} %" for n, g in growth.items() if g is not None)
        rows.append((f"RSS growth < {RSS_GROWTH_LIMIT_PCT:g} % over the soak", shown, worst < RSS_GROWTH_LIMIT_PCT))
        per_turn = {n: r.get("per_100_finals") for n, r in soak["rss"].items()}
        if any(v is not None for v in per_turn.values()):
            worst_turn = max((v for v in per_turn.values() if v is not None), default=0.0)
            shown = ", ".join(f"{n} {v:+.1f}" for n, v in per_turn.items() if v is not None)
            rows.append(
                (
                    f"RSS growth < {RSS_LEAK_LIMIT_MIB_PER_100:g} MiB per 100 ASR finals after the warm-up",
                    shown,
                    worst_turn < RSS_LEAK_LIMIT_MIB_PER_100,
                )
            )
    if fuzz:
        missing = sum(t.silent + len(t.uncoded) for t in fuzz.values())
        sent = sum(t.sent for t in fuzz.values())
        rows.append(("every malformed input answered with a coded error", f"{missing} of {sent} not", missing == 0))
    bombs = results.get("bombs")
    if bombs:
        bypasses = len(bombs["traversal"]["bypasses"]) + len(bombs["traversal"]["outside_store_changed"])
        rows.append(("0 traversal bypasses", str(bypasses), bypasses == 0))
        slow = [b for b in bombs["bombs"] if not b["answer"].startswith("413") or b["health_max_s"] > 1.0]
        rows.append(("bombs refused early (413) with /health answering", f"{len(slow)} not", not slow))
    return rows


def write(results: dict, settings: dict) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Reliability report",
        "",
        f"Written by `make soak` (bench/soak) on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        f"Machine: {machine()}.",
        "Stack: ASR (Whisper tiny.en, Smart Turn, Silero), TTS (espeak-ng), orchestrator on a local",
        "stand-in for Claude (tests/helpers/fake_claude.py), all on loopback, started by the harness.",
        "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()) + ".",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    for name, measured, ok in targets(results):
        lines.append(f"| {name} | {measured} | {'yes' if ok else '**no**'} |")
    if results.get("fuzz"):
        lines += _fuzz(results["fuzz"])
    if results.get("soak"):
        lines += _soak(results["soak"])
    if results.get("faults"):
        lines += _faults(results["faults"])
    if results.get("bombs"):
        lines += _bombs(results["bombs"])
    path = OUT / "RELIABILITY.md"
    path.write_text("\n".join(lines) + "\n")
    raw = {k: ({n: asdict(t) for n, t in v.items()} if k == "fuzz" else v) for k, v in results.items()}
    (OUT / "reliability.json").write_text(json.dumps({"settings": settings, **raw}, indent=1, default=str))
    return path


def _fuzz(fuzz: dict[str, Tally]) -> list[str]:
    lines = [
        "",
        "## Fuzz",
        "",
        "Each malformed message is followed by a sentinel whose answer is known, so every answer is",
        "tied to its message (Twilio: the bridge's skipped-message counter; its protocol has no error).",
        "`accepted` = no error and none owed (random bytes are valid PCM; a weird but valid text).",
        "",
        "| endpoint | sent | coded errors | accepted | silent (owed) | uncoded | 5xx / internal | unexpected closes"
        " | deaths | codes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for name, t in fuzz.items():
        codes = ", ".join(f"{c} ×{n}" for c, n in sorted(t.codes.items(), key=lambda kv: -kv[1]))
        lines.append(
            f"| {name} | {t.sent} | {t.coded} | {t.accepted} | {t.silent} | {len(t.uncoded)} | {t.server_errors} "
            f"| {len(t.unexpected_closes)} | {t.deaths} | {codes} |"
        )
        if t.accepted_by:
            notes.append(f"- {name}, accepted as valid: " + ", ".join(f"{c} ×{n}" for c, n in t.accepted_by.items()))
        for item in t.silent_cases[:5]:
            notes.append(f"- {name}, silent: `{item}`")
        for item in t.uncoded[:5]:
            notes.append(f"- {name}, uncoded: `{item}`")
        for item in t.unexpected_closes[:5]:
            notes.append(f"- {name}, closed: `{item}`")
    if notes:
        lines += ["", "Not answered with an error (accepted as valid input, or missed):", "", *notes]
    return lines


def _soak(soak: dict) -> list[str]:
    lines = [
        "",
        "## Soak",
        "",
        f"{soak['sessions']['asr']} ASR + {soak['sessions']['tts']} TTS + {soak['sessions']['agent']} agent sessions"
        f" of real speech at real-time pace for {soak['minutes']:g} min (wall {soak['wall_s']} s).",
        "Latency: ASR = final after the sentence's last frame; TTS = first audio chunk; agent = first agent",
        "audio after the user's last frame. Seconds.",
        "",
        "| sessions | owed | received | missing | p50 | p95 | max | unexpected closes | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for k in soak["kinds"]:
        errors = ", ".join(f"{c} ×{n}" for c, n in k["errors"].items()) or "–"
        lines.append(
            f"| {k['sessions']} {k['kind']} | {k['expected']} | {k['received']} | {k['expected'] - k['received']} "
            f"| {_fmt(k['p50'])} | {_fmt(k['p95'])} | {_fmt(k['max'])} | {len(k['unexpected_closes'])} | {errors} |"
        )
    closes = [c for k in soak["kinds"] for c in k["unexpected_closes"]]
    if closes:
        lines += ["", "Unexpected closes:", ""] + [f"- `{c}`" for c in closes[:20]]
    lines += [
        "",
        f"RSS (MiB; start / end = the lowest of the first / last 3 samples after the "
        f"{_fmt(soak.get('warmup_s'), 0)} s warm-up; per 100 = growth per 100 ASR finals after it):",
        "",
        "| service | start | middle | end | growth | second half | per 100 finals | peak | about once a minute |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in soak["rss"].items():
        minutes = " ".join(str(round(v)) for v in r.get("per_minute", []))
        lines.append(
            f"| {name} | {r['start']} | {r['middle']} | {r['end']} | {_fmt(r['growth_pct'], 1)} % "
            f"| {_fmt(r.get('second_half_pct'), 1)} % | {_fmt(r.get('per_100_finals'), 1)} MiB "
            f"| {r['peak']} | {minutes} |"
        )
    if soak.get("deaths"):
        lines += ["", "Processes that died during the soak: " + ", ".join(soak["deaths"])]
    return lines


def _faults(rows: list[dict]) -> list[str]:
    lines = ["", "## Faults", "", "Times in seconds from the restart command (Claude: from the next turn).", ""]
    for row in rows:
        lines.append(f"- **{row['fault']}**")
        for key, value in row.items():
            if key != "fault":
                lines.append(f"  - {key.replace('_', ' ')}: {_fmt(value, 1)}")
    return lines


def _bombs(bombs: dict) -> list[str]:
    lines = [
        "",
        "## Bombs and traversal",
        "",
        "| target | answer | seconds | RSS start → peak (MiB) | slowest /health (s) | /health failures | alive |",
        "|---|---|---|---|---|---|---|",
    ]
    for b in bombs["bombs"]:
        lines.append(
            f"| {b['target']} | {b['answer']} | {b['seconds']} | {b['rss_start_mb']} → {b['rss_peak_mb']} "
            f"| {b['health_max_s']} | {b['health_failures']} | {'yes' if b['alive'] else '**no**'} |"
        )
    t = bombs["traversal"]
    lines += [
        "",
        f"Traversal: {t['probes']} probes (REST GET/DELETE/POST voices, speech, WS synthesize/config/"
        f"register_voice) with ids like `..`, `../planted`, `voice\\n`: {len(t['bypasses'])} bypasses, "
        f"{len(t['outside_store_changed'])} files changed outside the store, store parent "
        f"{'intact' if t['store_parent_exists'] else '**deleted**'}.",
    ]
    lines += [f"- bypass: `{b}`" for b in t["bypasses"]]
    return lines
