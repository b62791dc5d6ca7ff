"""`python -m bench.soak` (= `make soak`): fuzz, soak, bombs on one stack, faults on a fresh one;
writes bench/out/RELIABILITY.md after each part, so a crash later keeps what was measured.

Defaults are issue 9's (10 ASR + 4 TTS + 2 agent sessions for 10 minutes, 200 malformed messages
per endpoint, a 10 h FLAC bomb); shorten with flags or SOAK_* variables, e.g.
`SOAK_MINUTES=3 make soak` or `python -m bench.soak --minutes 1 --parts fuzz,soak`.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from . import bombs, common, faults, fuzz, report, soak

PARTS = ("fuzz", "soak", "bombs", "faults")


def _env(name: str, default):
    return type(default)(os.environ.get(name, default))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=_env("SOAK_MINUTES", 10.0), help="soak length")
    parser.add_argument("--asr", type=int, default=_env("SOAK_ASR", 10), help="ASR sessions in the soak")
    parser.add_argument("--tts", type=int, default=_env("SOAK_TTS", 4), help="TTS sessions in the soak")
    parser.add_argument("--agent", type=int, default=_env("SOAK_AGENT", 2), help="agent sessions in the soak")
    parser.add_argument("--fuzz", type=int, default=_env("SOAK_FUZZ", 200), help="malformed messages per endpoint")
    parser.add_argument("--bomb-hours", type=float, default=_env("SOAK_BOMB_HOURS", 10.0), help="FLAC bomb length")
    parser.add_argument("--seed", type=int, default=_env("SOAK_SEED", 9))
    parser.add_argument("--parts", default=os.environ.get("SOAK_PARTS", ",".join(PARTS)), help="comma list")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    settings = {
        "minutes": args.minutes,
        "sessions": f"{args.asr}+{args.tts}+{args.agent}",
        "fuzz_per_endpoint": args.fuzz,
        "bomb_hours": args.bomb_hours,
        "seed": args.seed,
        "parts": ",".join(parts),
    }
    results: dict = {}
    report.machine()  # the commit the run starts on
    if any(p in parts for p in ("fuzz", "soak", "bombs")):
        with common.stack("soak") as s:
            if "fuzz" in parts:
                print(f"[soak] fuzz: {args.fuzz} per endpoint", flush=True)
                results["fuzz"] = asyncio.run(fuzz.run(s, args.fuzz, args.seed))
                report.write(results, settings)
            if "soak" in parts:
                print(f"[soak] soak: {settings['sessions']} sessions, {args.minutes:g} min", flush=True)
                results["soak"] = asyncio.run(soak.run(s, args.minutes, args.asr, args.tts, args.agent))
                results["soak"]["deaths"] = [n for n, svc in common.services(s).items() if not common.alive(svc)]
                report.write(results, settings)
            if "bombs" in parts:
                print(f"[soak] bombs ({args.bomb_hours:g} h) and traversal", flush=True)
                results["bombs"] = asyncio.run(bombs.run(s, args.bomb_hours))
                report.write(results, settings)
    if "faults" in parts:
        print("[soak] faults", flush=True)
        with common.stack("soak-faults") as s:
            results["faults"] = asyncio.run(faults.run(s))
        report.write(results, settings)
    path = report.write(results, settings)
    print(f"[soak] report: {path}")
    for name, measured, ok in report.targets(results):
        print(f"  {'ok  ' if ok else 'MISS'} {name}: {measured}")


if __name__ == "__main__":
    main()
