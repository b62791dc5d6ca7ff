from __future__ import annotations

import importlib
import sys

from .report import Report

PARTS = ("asr", "tts", "agent", "pipecat_agent")  # pipecat_agent skips itself without .venv-pipecat


def main(argv: list[str]) -> None:
    parts = argv or list(PARTS)
    report = Report()
    for part in parts:
        print(f"[bench] {part}", flush=True)
        importlib.import_module(f"bench.{part}").run(report)
        report.write()  # after each part, so a crash later keeps what was measured
    print(f"[bench] report: {report.write()}")


if __name__ == "__main__":
    main(sys.argv[1:])
